//! dockerd's merge of an image's config into the config a container is
//! created with: user, ports, env (the container's entries win), labels,
//! entrypoint and cmd, working directory, volumes and the rest.

use std::collections::{HashMap, HashSet};

use bollard_stubs::models::{ContainerConfig, ImageConfig};

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// dockerd's merge of image defaults into a user config.
pub fn merge_image_config(user: &mut ContainerConfig, image: &ImageConfig) {
    if user.user.as_deref().unwrap_or("").is_empty() {
        user.user = image.user.clone();
    }
    if let Some(ports) = &image.exposed_ports {
        let mine = user.exposed_ports.get_or_insert_with(Vec::new);
        for p in ports {
            if !mine.contains(p) {
                mine.push(p.clone());
            }
        }
    }
    if let Some(env) = &image.env {
        let mine = user.env.get_or_insert_with(Vec::new);
        let keys: HashSet<String> = mine.iter().map(|e| env_key(e).to_string()).collect();
        let mut merged: Vec<String> = env
            .iter()
            .filter(|e| !keys.contains(env_key(e)))
            .cloned()
            .collect();
        merged.append(mine);
        *mine = merged;
    }
    if let Some(labels) = &image.labels {
        let mine = user.labels.get_or_insert_with(HashMap::new);
        for (k, v) in labels {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let no_entrypoint = user.entrypoint.as_ref().is_none_or(|e| e.is_empty());
    if no_entrypoint {
        if user.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            user.cmd = image.cmd.clone();
            user.args_escaped = image.args_escaped;
        }
        if user.entrypoint.is_none() {
            user.entrypoint = image.entrypoint.clone();
        }
    }
    // `--entrypoint ""` arrives as [""]: an explicit empty entrypoint.
    if user
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty())
    {
        user.entrypoint = Some(Vec::new());
    }
    if user.working_dir.as_deref().unwrap_or("").is_empty() {
        user.working_dir = image.working_dir.clone();
    }
    if let Some(vols) = &image.volumes {
        let mine = user.volumes.get_or_insert_with(Vec::new);
        for v in vols {
            if !mine.contains(v) {
                mine.push(v.clone());
            }
        }
    }
    if user.stop_signal.is_none() {
        user.stop_signal = image.stop_signal.clone();
    }
    if user.healthcheck.is_none() {
        user.healthcheck = image.healthcheck.clone();
    }
    if user.on_build.as_ref().is_none_or(|o| o.is_empty()) {
        user.on_build = image.on_build.clone();
    }
    if user.shell.as_ref().is_none_or(|s| s.is_empty()) {
        user.shell = image.shell.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_like_dockerd() {
        let image = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            working_dir: Some("/w".into()),
            ..Default::default()
        };
        let mut user = ContainerConfig {
            env: Some(vec!["A=user".into()]),
            ..Default::default()
        };
        merge_image_config(&mut user, &image);
        assert_eq!(user.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(
            user.env,
            Some(vec!["PATH=/bin".to_string(), "A=user".to_string()])
        );
        assert_eq!(user.working_dir.as_deref(), Some("/w"));
        let mut user = ContainerConfig {
            entrypoint: Some(vec!["echo".into()]),
            ..Default::default()
        };
        merge_image_config(&mut user, &image);
        assert_eq!(
            user.cmd, None,
            "an entrypoint without cmd does not inherit the image cmd"
        );
    }
}

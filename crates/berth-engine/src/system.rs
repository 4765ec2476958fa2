//! `docker version` and `docker info`: what the engine reports about
//! itself, the storage driver and the host (kernel, OS, CPUs, memory).

use bollard_stubs::models::{SystemInfo, SystemVersion};

use crate::engine::Engine;

impl Engine {
    /// The `GET /version` body.
    pub fn version(&self) -> SystemVersion {
        SystemVersion {
            version: Some(crate::VERSION.to_string()),
            api_version: Some(crate::API_VERSION.to_string()),
            min_api_version: Some(crate::MIN_API_VERSION.to_string()),
            os: Some("linux".to_string()),
            arch: Some("amd64".to_string()),
            ..Default::default()
        }
    }

    /// The `GET /info` body.
    pub fn info(&self) -> SystemInfo {
        SystemInfo {
            driver: Some(self.driver.name().to_string()),
            driver_status: Some(
                self.driver
                    .status()
                    .into_iter()
                    .map(|(k, v)| vec![k, v])
                    .collect(),
            ),
            docker_root_dir: Some(self.config.data_root.display().to_string()),
            debug: Some(self.config.debug),
            ..Default::default()
        }
    }
}

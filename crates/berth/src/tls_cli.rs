//! The command line of `berth tls generate`: its flags, and the berthd and
//! docker invocations it prints so the operator can use the files at once.
//! The certificates themselves are made by the library (`berth::tls`).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use berth::tls::{self, Request};
use clap::Args;

#[derive(Args)]
pub struct GenerateArgs {
    /// The daemon's host name, as clients will dial it (default: this
    /// machine's host name). Goes into the server certificate.
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// An IP address clients may dial (repeatable). localhost, 127.0.0.1
    /// and ::1 are always included.
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,
    /// Another DNS name for the server (repeatable).
    #[arg(long = "dns", value_name = "NAME")]
    dns_names: Vec<String>,
    /// Where to write the files.
    #[arg(long, value_name = "DIR", default_value = "/etc/berth/tls")]
    dir: PathBuf,
    /// The client certificate's common name.
    #[arg(long, value_name = "NAME", default_value = "client")]
    client_name: String,
    /// Validity of the certificates, in days.
    #[arg(long, value_name = "N", default_value_t = 365)]
    days: u32,
    /// Replace certificates already in DIR.
    #[arg(long)]
    force: bool,
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let hostname = match args.hostname {
        Some(h) => h,
        None => rustix::system::uname()
            .nodename()
            .to_str()
            .context("this machine's host name is not UTF-8; pass --hostname")?
            .to_string(),
    };
    let dir = if args.dir.is_absolute() {
        args.dir
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(args.dir)
    };
    let req = Request {
        dir,
        hostname: hostname.clone(),
        dns_names: args.dns_names,
        ips: args.ips,
        client_name: args.client_name,
        days: args.days,
        force: args.force,
    };
    let f = tls::generate(&req)?;
    let show = |p: &PathBuf| p.display().to_string();
    println!("Wrote to {}:", req.dir.display());
    println!(
        "  {}  the CA certificate (daemon and clients)",
        show(&f.ca_cert)
    );
    println!(
        "  {}  the CA's private key: move it somewhere offline; it signs new certificates",
        show(&f.ca_key)
    );
    println!("  {}  the server certificate", show(&f.server_cert));
    println!("  {}  the server's private key", show(&f.server_key));
    println!("  {}  the client certificate", show(&f.client_cert));
    println!("  {}  the client's private key", show(&f.client_key));
    println!();
    println!("Serve the API over TCP, requiring client certificates from this CA:");
    println!(
        "  berthd --tlsverify --tlscacert={} --tlscert={} --tlskey={} -H unix:///run/berth.sock -H tcp://0.0.0.0:2376",
        show(&f.ca_cert),
        show(&f.server_cert),
        show(&f.server_key)
    );
    println!("or in /etc/berth/daemon.json:");
    println!(
        "  {{\"tlsverify\": true, \"tlscacert\": \"{}\", \"tlscert\": \"{}\", \"tlskey\": \"{}\", \"hosts\": [\"unix:///run/berth.sock\", \"tcp://0.0.0.0:2376\"]}}",
        show(&f.ca_cert),
        show(&f.server_cert),
        show(&f.server_key)
    );
    println!();
    println!("Connect from a client:");
    println!(
        "  docker --tlsverify --tlscacert={} --tlscert={} --tlskey={} -H tcp://{hostname}:2376 info",
        show(&f.ca_cert),
        show(&f.client_cert),
        show(&f.client_key)
    );
    println!(
        "or copy ca.pem, cert.pem and key.pem to ~/.docker/ and set DOCKER_HOST=tcp://{hostname}:2376 DOCKER_TLS_VERIFY=1"
    );
    Ok(())
}

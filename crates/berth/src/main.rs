//! The `berth` command line: operator commands the docker CLI lacks.
//! Parsing and printing only; the work is in the library (`berth::setup`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth::setup::{self, Request, SetupDriver, Target};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod tls_cli;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Operator commands for the berth container engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Storage set-up for berthd's data root.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// Certificates for serving the API over TCP with TLS.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write a CA, a server certificate and a client certificate (ca.pem,
    /// ca-key.pem, server-cert.pem, server-key.pem, cert.pem, key.pem), as
    /// Docker's guide to protecting the daemon socket does with openssl.
    Generate(tls_cli::GenerateArgs),
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Make a device or a new image file into a data root for a storage
    /// driver: the filesystem or pool, the mount on the data root and,
    /// with --fstab, the entry that remounts it at boot.
    Setup(SetupArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum DriverArg {
    Btrfs,
    Zfs,
    /// xfs mounted with project quota, for overlay2 with size limits.
    Overlay2,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["device", "file"])))]
struct SetupArgs {
    /// The storage driver to prepare for.
    #[arg(long, value_enum)]
    driver: DriverArg,
    /// A block device to use whole. Refused if it holds a filesystem or
    /// partition table, unless --force.
    #[arg(long, value_name = "DEV")]
    device: Option<PathBuf>,
    /// A new sparse image file to create (needs --size).
    #[arg(long, value_name = "PATH", requires = "size")]
    file: Option<PathBuf>,
    /// Size of the image file, e.g. 20G (binary units).
    #[arg(
        long,
        value_name = "SIZE",
        requires = "file",
        conflicts_with = "device"
    )]
    size: Option<String>,
    /// Where berthd keeps its data (its --data-root).
    #[arg(long, value_name = "PATH")]
    data_root: PathBuf,
    /// Print the exact steps and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Erase an existing filesystem on the device, replace an existing
    /// image file, mount over a non-empty data root.
    #[arg(long)]
    force: bool,
    /// Add an fstab entry so the data root is mounted at boot.
    #[arg(long)]
    fstab: bool,
    /// The fstab --fstab writes to.
    #[arg(long, value_name = "PATH", default_value = "/etc/fstab")]
    fstab_path: PathBuf,
    /// zfs: the pool to create.
    #[arg(long, value_name = "NAME", default_value = "berth")]
    pool: String,
}

fn storage_setup(args: SetupArgs) -> Result<()> {
    let driver = match args.driver {
        DriverArg::Btrfs => SetupDriver::Btrfs,
        DriverArg::Zfs => SetupDriver::Zfs,
        DriverArg::Overlay2 => SetupDriver::Overlay2,
    };
    let target = match (args.device, args.file, args.size) {
        (Some(device), None, None) => Target::Device(device),
        (None, Some(path), Some(size)) => Target::File {
            path,
            size: berth_storage::drivers::parse_size(&size)
                .with_context(|| format!("--size {size}"))?,
        },
        _ => anyhow::bail!("give either --device DEV or --file PATH --size SIZE"),
    };
    let request = Request {
        driver,
        target,
        data_root: args.data_root,
        force: args.force,
        fstab: args.fstab.then_some(args.fstab_path),
        pool: args.pool,
    };
    let plan = setup::plan(&request)?;
    if args.dry_run {
        print!("{}", plan.render(true));
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        anyhow::bail!("berth storage setup needs root (mkfs, mount, zpool); try --dry-run");
    }
    plan.execute(&mut std::io::stdout())?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Storage {
            command: StorageCommand::Setup(args),
        } => storage_setup(args),
        Command::Tls {
            command: TlsCommand::Generate(args),
        } => tls_cli::generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

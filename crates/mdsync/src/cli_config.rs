//! `mdsync config init`: writes a working `mdsync.toml` for a running emulator pair.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Write a config file for running emulators.
    Init(InitArgs),
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Config file to write.
    #[arg(long, default_value = "mdsync.toml")]
    config: PathBuf,
    /// Dataverse and Marketo emulator URLs: registers fresh credentials through their test surface.
    #[arg(long, num_args = 2, value_names = ["DATAVERSE_URL", "MARKETO_URL"], conflicts_with = "from_emulator_json")]
    from_emulator: Option<Vec<String>>,
    /// The `mdsync emulate --print-json` line, from a file or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    from_emulator_json: Option<String>,
    /// `[sync] state` of the new file.
    #[arg(long, default_value = "mdsync.db")]
    state: String,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

pub async fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let ConfigCommand::Init(args) = args.command;
    if args.config.exists() && !args.force {
        bail!(
            "{} exists; pass --force to replace it",
            args.config.display()
        );
    }
    let values = match (&args.from_emulator, &args.from_emulator_json) {
        (Some(urls), _) => {
            let [dataverse, marketo] = urls.as_slice() else {
                bail!("--from-emulator takes two URLs: Dataverse, then Marketo");
            };
            mdsync_setup::emulator_init::from_urls(dataverse, marketo, &args.state).await?
        }
        (None, Some(source)) => {
            let text = if source == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading stdin")?;
                text
            } else {
                std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
            };
            mdsync_setup::emulator_init::from_description_json(&text, &args.state)?
        }
        (None, None) => bail!(
            "give --from-emulator <DATAVERSE_URL> <MARKETO_URL> or --from-emulator-json <FILE|->"
        ),
    };
    let text = mdsync_config::render(&values);
    // Check the result loads before writing it.
    mdsync_config::parse(&args.config, &text).context("the generated config does not load")?;
    write_private(&args.config, &text)
        .with_context(|| format!("writing {}", args.config.display()))?;
    println!(
        "wrote {} (it holds client secrets: keep it private)",
        args.config.display()
    );
    Ok(())
}

/// Writes a file only its owner can read: the config holds client secrets.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // An existing file keeps its old mode on open: tighten it too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(text.as_bytes())
    }
}

//! `gridnet access-config`: the wg-quick configuration of an access peer, for the machine that
//! joins the network (a laptop, a site's router).

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::ledger::{LedgerArgs, read_all};
use crate::{ledger, plan::access::client_config, vocab::WgKey};

/// Print an access peer's wg-quick configuration (its private key stays off the ledger: give it
/// with --private-key-file, or fill in the placeholder).
#[derive(Debug, clap::Args)]
pub struct AccessConfigArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    /// The network, `OWNER/NAME`.
    #[arg(long)]
    network: String,
    /// The access peer, `NAME` or `OWNER/NAME`.
    #[arg(long)]
    name: String,
    /// The client's private key file (base64, as `wg genkey` writes it); it must belong to the
    /// public key on the ledger.
    #[arg(long, value_name = "PATH")]
    private_key_file: Option<PathBuf>,
    /// JSON for scripts (without the private key).
    #[arg(long)]
    json: bool,
}

impl AccessConfigArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let entries = read_all(&self.ledger)?;
        let replay = ledger::replay(&entries);
        let config = client_config(replay.chain.state(), &self.network, &self.name)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&config)?);
            return Ok(());
        }
        let private_key = match &self.private_key_file {
            Some(path) => Some(read_private_key(path, &config.public_key)?),
            None => None,
        };
        print!("{}", config.wg_quick(private_key.as_deref()));
        Ok(())
    }
}

/// The key in `path`, checked against the public key the ledger holds for the peer.
fn read_private_key(path: &PathBuf, registered: &WgKey) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the private key file {}", path.display()))?;
    let text = text.trim();
    let key: WgKey = text.parse().with_context(|| {
        format!(
            "{} does not hold a WireGuard private key (44 characters of base64)",
            path.display()
        )
    })?;
    let public = WgKey::of_private(key.0);
    if public != *registered {
        bail!(
            "the key in {} has public key {public}, but the ledger registers {registered} for this peer",
            path.display()
        );
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("gridnet-access-key-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write key file");
        path
    }

    #[test]
    fn the_private_key_must_be_the_registered_peers_and_well_formed() {
        let secret = [7u8; 32];
        let public = WgKey::of_private(secret);
        let text = WgKey(secret).to_string();
        let good = key_file("good", &format!("{text}\n"));
        assert_eq!(read_private_key(&good, &public).expect("its key"), text);

        let other = WgKey([8; 32]);
        let err = read_private_key(&good, &other).expect_err("another peer's key");
        assert!(
            err.to_string().contains("but the ledger registers"),
            "{err}"
        );

        let garbage = key_file("garbage", "not a key");
        let err = read_private_key(&garbage, &public).expect_err("garbage");
        assert!(
            err.to_string()
                .contains("does not hold a WireGuard private key"),
            "{err:#}"
        );
        for path in [good, garbage] {
            let _ = std::fs::remove_file(path);
        }
    }
}

//! `gridnet apply`: realize a node plan once and exit.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    plan::NodePlan,
    reconcile::{self, NodeConfig, Reconciler},
};

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The node plan (YAML): networks and containers of this node.
    plan: PathBuf,
    /// The bpffs directory of the datapath's pins.
    #[arg(long, default_value = crate::dataplane::DEFAULT_PIN_ROOT)]
    pin_root: PathBuf,
    /// Prefix of the container namespaces this node owns.
    #[arg(long, default_value = crate::reconcile::names::DEFAULT_NETNS_PREFIX)]
    netns_prefix: String,
    /// How to attach programs: `auto` (TCX where the kernel has it), `tcx` or `netlink`.
    #[arg(long, default_value = "auto")]
    attach: crate::dataplane::AttachPreference,
    /// An underlay interface to guard with XDP (repeat for several).
    #[arg(long = "uplink")]
    uplinks: Vec<String>,
}

impl ApplyArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.plan)
            .with_context(|| format!("cannot read the plan {}", self.plan.display()))?;
        let plan: NodePlan = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a valid node plan", self.plan.display()))?;
        let config = NodeConfig {
            pin_root: self.pin_root,
            netns_prefix: self.netns_prefix,
            attach: self.attach,
            uplinks: self.uplinks,
            mtu: crate::reconcile::DEFAULT_MTU,
            // `apply` runs no tunnels.
            uapi_dir: None,
        };
        reconcile::validate(&plan)
            .with_context(|| format!("{} is refused; nothing was changed", self.plan.display()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let outcome = runtime
            .block_on(async {
                let mut reconciler = Reconciler::open(config, None)?;
                reconciler.reconcile(&plan).await
            })
            .context("applying the plan failed (run as root; the error names the object)")?;
        if outcome.applied.is_empty() {
            println!("no changes");
        } else {
            for change in &outcome.applied {
                println!("{change}");
            }
            println!("{} changes", outcome.applied.len());
        }
        if !outcome.failed.is_empty() {
            for failure in &outcome.failed {
                eprintln!("{}: {}", failure.object, failure.error);
            }
            anyhow::bail!("{} objects could not be realized", outcome.failed.len());
        }
        Ok(())
    }
}

//! `gridnet run`: the node agent.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::daemon::{self, config::NodeConfigFile};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The node's configuration (see docs/agent.md).
    #[arg(long)]
    config: PathBuf,
}

impl RunArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let config = NodeConfigFile::load(&self.config)?;
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(daemon::run(config))
    }
}

//! `gridnet node ...`

#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {}

impl NodeCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {}
    }
}

//! Builds the eBPF programs (crate `gridnet-ebpf`, target `bpfel-unknown-none`, nightly
//! toolchain, bpf-linker) into `OUT_DIR/gridnet-ebpf`, which the agent embeds.
//! `cargo xtask setup` installs what this needs.

fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf");
    let package = aya_build::Package {
        name: "gridnet-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Nightly)
}

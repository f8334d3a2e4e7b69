//! `bohp export`: a finished run's parameters as safetensors, npz or JSON.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::ExportArgs;

pub(crate) fn export_command(args: &ExportArgs) -> Result<ExitCode> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| bohp::export::default_path(&args.run_dir, args.format));
    let count = super::registry().export(&args.run_dir, args.format, &out)?;
    println!(
        "wrote {count} tensors to {} ({})",
        out.display(),
        args.format.name()
    );
    Ok(ExitCode::SUCCESS)
}

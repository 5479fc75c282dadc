use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::ExitStatus;
use crate::ui::Printer;

pub fn completions(printer: &Printer, args: &CompletionsArgs) -> anyhow::Result<ExitStatus> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "devcluster", &mut buf);
    printer.out(String::from_utf8_lossy(&buf).trim_end());
    Ok(ExitStatus::Success)
}

//! `attune --help` with its commands in two groups: the server's (`up`, `serve`, ...) and
//! the client's (this crate's [`Command`](crate::Command)s). clap lists subcommands under
//! one heading only, so the top-level help gets a template with both lists written out.

use clap::{CommandFactory, FromArgMatches, Subcommand};

/// Parses the binary's command line with the grouped help.
pub fn parse<T: CommandFactory + FromArgMatches>() -> T {
    let matches = grouped(T::command()).get_matches();
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `cli` with a help template listing server and client commands apart.
pub fn grouped(cli: clap::Command) -> clap::Command {
    let client: Vec<String> = crate::Command::augment_subcommands(clap::Command::new("client"))
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let entries: Vec<(String, String, bool)> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| {
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            let about = about.lines().next().unwrap_or("").to_string();
            (c.get_name().to_string(), about, client.contains(&c.get_name().to_string()))
        })
        .collect();
    let width = entries.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
    let header = cli.get_styles().get_header();
    let list = |is_client: bool| {
        entries
            .iter()
            .filter(|(_, _, c)| *c == is_client)
            .map(|(name, about, _)| format!("  {name:<width$}  {about}\n"))
            .collect::<String>()
    };
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n\
         {header}Server commands{header:#} (run Attune):\n{}\n\
         {header}Client commands{header:#} (talk to a running Attune; start with `attune login`):\n{}\n\
         {header}Options:{header:#}\n{{options}}{{after-help}}",
        list(false),
        list(true),
    );
    cli.help_template(template).after_help("`attune help COMMAND` (or `attune COMMAND --help`) tells more about each.")
}

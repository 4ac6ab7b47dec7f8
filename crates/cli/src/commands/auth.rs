//! `attune login`, `whoami`, `logout`: profiles and their tokens (see [`crate::profile`]).

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use reqwest::Method;
use serde_json::json;

use crate::client::{credentials_from, Api};
use crate::error::CliError;
use crate::output::{self, Out};
use crate::profile::{self, Profile, Store, DEFAULT_URL};
use crate::Options;

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The server, e.g. http://127.0.0.1:8080 (default: ATTUNE_URL, else the profile's,
    /// else http://127.0.0.1:8080).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Your login (asked for on a terminal; default: the profile's).
    #[arg(short, long, value_name = "LOGIN")]
    pub user: Option<String>,
    /// Read the password from the first line of stdin (for scripts), instead of asking.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub options: Options,
}

pub async fn login(args: LoginArgs) -> Result<(), CliError> {
    let store = Store::open()?;
    let mut config = store.load()?;
    let profile_name = profile::profile_name(&config, args.options.profile.as_deref());
    let existing = config.profiles.get(&profile_name).cloned();
    let url = match args.url.or_else(|| std::env::var("ATTUNE_URL").ok().filter(|u| !u.trim().is_empty())) {
        Some(u) => profile::normalise_url(&u)?,
        None => existing.as_ref().map(|p| p.url.clone()).unwrap_or_else(|| DEFAULT_URL.to_string()),
    };
    let user = match args.user {
        Some(u) => u,
        None => ask_login(existing.as_ref().and_then(|p| p.login.clone()))?,
    };
    let password = super::password(&format!("Password for {user} at {url}: "), args.password_stdin)?;
    let api = Api::anonymous(&url);
    let tokens = api.send_anonymous(Method::POST, "/auth/login", json!({"login": user, "password": password})).await;
    let tokens = match tokens {
        Ok(t) => t,
        Err(CliError::Api(f)) if f.status == 401 => {
            return Err(CliError::Refused(format!("login refused by {url}: wrong login or password for {user:?}")))
        }
        Err(e) => return Err(e),
    };
    let credentials = credentials_from(&tokens)?;
    config.profiles.insert(profile_name.clone(), Profile { url: url.clone(), login: Some(user.clone()) });
    config.current_profile = Some(profile_name.clone());
    store.save(&config)?;
    store.save_credentials(&profile_name, &credentials)?;
    let me = Api::connect(Some(&profile_name))?.get("/auth/me", &[]).await?;
    let out = Out::new(args.options.output);
    if out.machine() {
        out.data(&json!({"url": url, "profile": profile_name, "user": me}));
    } else {
        println!(
            "Logged in to {url} as {} ({} of tenant {}); profile {profile_name:?} saved in {}",
            output::text(&me["login"]),
            output::text(&me["role"]),
            output::text(&me["tenant_id"]),
            store.config_path().display()
        );
    }
    Ok(())
}

/// The login, asked for on a terminal (Enter keeps the profile's).
fn ask_login(default: Option<String>) -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return default.ok_or_else(|| CliError::usage("give your login with --user (no terminal to ask on)"));
    }
    match &default {
        Some(d) => eprint!("Login [{d}]: "),
        None => eprint!("Login: "),
    }
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::usage(format!("cannot read the login: {e}")))?;
    match (line.trim(), default) {
        ("", Some(d)) => Ok(d),
        ("", None) => Err(CliError::usage("no login given")),
        (l, _) => Ok(l.to_string()),
    }
}

pub async fn whoami(options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let me = api.get("/auth/me", &[]).await?;
    let out = Out::new(options.output);
    let value = json!({"url": api.url, "profile": api.profile, "user": me});
    out.record(
        &value,
        &[
            ("url", api.url.clone()),
            ("profile", api.profile.clone()),
            ("login", output::text(&me["login"])),
            ("role", output::text(&me["role"])),
            ("tenant", output::text(&me["tenant_id"])),
        ],
    );
    Ok(())
}

pub fn logout(options: &Options) -> Result<(), CliError> {
    let store = Store::open()?;
    let config = store.load()?;
    let name = profile::profile_name(&config, options.profile.as_deref());
    let url = config.profiles.get(&name).map(|p| p.url.clone());
    let forgot = store.forget_credentials(&name)?;
    let out = Out::new(options.output);
    if out.machine() {
        out.data(&json!({"profile": name, "url": url, "logged_out": forgot}));
        return Ok(());
    }
    match (forgot, url) {
        (true, Some(url)) => println!("Logged out of {url} (profile {name:?}: its tokens are deleted)"),
        (true, None) => println!("Logged out (profile {name:?}: its tokens are deleted)"),
        (false, _) => println!("Profile {name:?} held no tokens: nothing to do"),
    }
    if std::env::var_os("ATTUNE_TOKEN").is_some() {
        eprintln!("note: ATTUNE_TOKEN is set in your environment and still works: unset it too");
    }
    Ok(())
}

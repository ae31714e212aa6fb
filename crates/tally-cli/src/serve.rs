//! `tally serve` and `tally key`: the HTTP API and its keys.

use crate::args::{KeyCommand, RoleArg, ServeArgs};
use crate::connect::Database;
use crate::render::Output;
use anyhow::{Context, Result};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use tally_server::{ServerConfig, generate_key};
use tally_store::{NewApiKey, Role, StoreError};

fn role(arg: RoleArg) -> Role {
    match arg {
        RoleArg::Admin => Role::Admin,
        RoleArg::Operator => Role::Operator,
        RoleArg::Auditor => Role::Auditor,
        RoleArg::Reader => Role::Reader,
    }
}

/// Creates a key and returns it with its record; the key itself exists nowhere else.
async fn create_key(
    db: &Database,
    name: &str,
    role: Role,
    accounts: Vec<uuid::Uuid>,
    ledgers: Vec<tally_core::LedgerId>,
) -> Result<(String, tally_store::ApiKeyRecord), StoreError> {
    let generated = generate_key();
    let new = NewApiKey {
        name: name.to_owned(),
        role,
        key_hash: generated.hash,
        prefix: generated.prefix,
        accounts,
        ledgers,
    };
    let record = db.store.create_api_key(&new, &db.actor).await?;
    Ok((generated.key, record))
}

pub async fn key(db: &Database, out: &Output, command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Create { name, role: role_arg, accounts, ledgers } => {
            let mut ids = Vec::with_capacity(accounts.len());
            for account in &accounts {
                ids.push(db.store.require_account(account).await?.account.id.0);
            }
            let mut scope = Vec::with_capacity(ledgers.len());
            for ledger in &ledgers {
                scope.push(db.store.require_ledger(ledger).await?.id);
            }
            let (key, record) = create_key(db, &name, role(role_arg), ids, scope).await?;
            out.value(
                &json!({"key": key, "name": record.name, "role": record.role, "id": record.id, "accounts": record.accounts,
                        "ledgers": record.ledgers}),
                || format!("{key}\n(key {} with role {}: shown once; only its hash is stored)", record.name, record.role.as_str()),
            );
        }
        KeyCommand::List => {
            let keys = db.store.list_api_keys().await?;
            out.value(&serde_json::to_value(&keys)?, || {
                let mut table = Table::new();
                table
                    .load_preset(UTF8_FULL_CONDENSED)
                    .set_header(["name", "role", "prefix", "accounts", "ledgers", "created", "by", "revoked"]);
                for k in &keys {
                    table.add_row([
                        k.name.clone(),
                        k.role.as_str().to_owned(),
                        format!("{}…", k.prefix),
                        k.accounts.len().to_string(),
                        if k.ledgers.is_empty() {
                            "all".to_owned()
                        } else {
                            k.ledgers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",")
                        },
                        tally_server::views::time(k.created_at),
                        k.created_by.clone(),
                        k.revoked_at.map(tally_server::views::time).unwrap_or_default(),
                    ]);
                }
                table.to_string()
            });
        }
        KeyCommand::Revoke { name } => {
            let record = db.store.revoke_api_key(&name, &db.actor).await?;
            out.value(&json!({"name": record.name, "revoked": true}), || format!("key {} is revoked", record.name));
        }
    }
    Ok(())
}

fn config(args: &ServeArgs) -> Result<ServerConfig> {
    let config = ServerConfig {
        listen: args.listen,
        body_limit: args.body_limit,
        batch_body_limit: args.batch_body_limit,
        max_connections: args.max_connections,
        max_in_flight: args.max_in_flight,
        rate_limit_per_key: args.rate_limit,
        request_timeout: humantime::parse_duration(&args.request_timeout).context("--request-timeout")?,
        shutdown_timeout: humantime::parse_duration(&args.shutdown_timeout).context("--shutdown-timeout")?,
        reconcile_after: match args.reconcile_after.as_str() {
            "off" => None,
            text => Some(humantime::parse_duration(text).context("--reconcile-after")?),
        },
        webhooks: if args.no_webhooks { None } else { Some(crate::relay::webhook_config(&args.webhook)?) },
        nats: crate::relay::nats_config(&args.nats)?,
        replica: replica_config(args)?,
        console_dir: args.console_dir.clone(),
        ..ServerConfig::default()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// Where `tally serve` reads from: the replica of `--replica-url`, if given.
pub fn replica_config(args: &ServeArgs) -> Result<Option<tally_server::replica::ReplicaConfig>> {
    let Some(url) = &args.replica_url else { return Ok(None) };
    Ok(Some(tally_server::replica::ReplicaConfig {
        url: url.clone(),
        max_lag: humantime::parse_duration(&args.replica_max_lag).context("--replica-max-lag")?,
        wait: humantime::parse_duration(&args.replica_wait).context("--replica-wait")?,
    }))
}

/// The engine of `tally serve`: the default one, finding out about an unanswered COMMIT for
/// `--resolve-within` when given, which must then end before the request does.
pub fn engine_config(args: &ServeArgs) -> Result<tally_engine::EngineConfig> {
    let Some(within) = &args.resolve_within else {
        return Ok(tally_engine::EngineConfig::default());
    };
    let within = humantime::parse_duration(within).context("--resolve-within")?;
    let request = humantime::parse_duration(&args.request_timeout).context("--request-timeout")?;
    anyhow::ensure!(
        !within.is_zero() && within <= tally_engine::RESOLVE_WITHIN_MAX,
        "--resolve-within must be above 0 and at most {:?}",
        tally_engine::RESOLVE_WITHIN_MAX
    );
    anyhow::ensure!(
        within < request,
        "--resolve-within ({within:?}) must be shorter than --request-timeout ({request:?}), or a request ends \
         before the engine has found out what became of its transfers"
    );
    Ok(tally_engine::EngineConfig { resolve_within: within, ..tally_engine::EngineConfig::default() })
}

/// A future that resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed here, before
/// the server announces itself, so that a signal sent right after the announcement is caught.
pub fn stop_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

pub async fn serve(db: &Database, args: &ServeArgs) -> Result<()> {
    let config = config(args)?;
    let active = db.store.active_api_keys().await?;
    if active > 0 {
        // Keys exist already (made with `tally key create`, or by an earlier start), and a key is
        // shown only when it is made: say where one comes from.
        println!(
            "{active} active API key(s); each was shown once, when it was made. \
             `tally key list` lists them; `tally key create --name NAME --role admin|operator|auditor|reader` makes another."
        );
    }
    if active == 0 {
        let created = match create_key(db, "admin", Role::Admin, Vec::new(), Vec::new()).await {
            Err(StoreError::KeyNameTaken(_)) => {
                let suffix = &uuid::Uuid::now_v7().simple().to_string()[24..];
                create_key(db, &format!("admin-{suffix}"), Role::Admin, Vec::new(), Vec::new()).await
            }
            other => other,
        };
        let (key, record) = created?;
        println!("first start: created API key '{}' (role admin). It is shown this once:\n\n    {key}\n", record.name);
        println!("Create more with `tally key create --name NAME --role operator|auditor|reader`.");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tally_server::tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let stop = stop_signal()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    println!("Tally serves {scheme}://{addr} (Ctrl-C or SIGTERM stops it gracefully)");
    println!("  operator console: {scheme}://{addr}/console/ (sign in with an API key)");
    match tally_server::serve(listener, db.store.clone(), db.engine.clone(), config, tls, stop).await? {
        tally_server::Shutdown::Complete => println!("stopped: every accepted request was answered"),
        tally_server::Shutdown::Abandoned => println!(
            "stopped at the shutdown timeout: requests still open were cut off, and transfers still in flight \
             (if any) were rolled back where possible and answered outcome_unknown (a retry with the same id is safe)"
        ),
    }
    Ok(())
}

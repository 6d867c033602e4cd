//! The store's behaviour suite: every case is written once, against `&dyn Store`, and
//! run on both backends.
//!
//! PostgreSQL cases use `#[sqlx::test]`, which makes a fresh database per test on the
//! server named by `DATABASE_URL`. Without it (or with the server down) the run FAILS at
//! once, never skips, and says how to start it (`postgres::a_server_is_reachable`):
//!
//! ```sh
//! pg_ctlcluster 15 main start
//! export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! SQLite cases run on a file in a temporary folder.

mod harness;

mod approvals;
mod auto_deploy;
mod chat;
mod claims;
mod concurrency;
mod dry_runs;
mod fencing;
mod freezes;
mod history;
mod lifecycle;
mod locks;
mod logs;
mod outbox;
mod schema;
mod wake;

/// Generates, for each `module::case`, one PostgreSQL test and one SQLite test that run
/// the case against a fresh database.
macro_rules! on_both_backends {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod postgres {
            /// Starts first (tests start in name order). Without PostgreSQL every case
            /// below would wait 30 s in sqlx's pool before failing; this stops the run at
            /// once, failed, with instructions. Never a skip.
            #[test]
            fn a_server_is_reachable() {
                crate::require_postgres();
            }

            $(
                #[sqlx::test(migrations = false)]
                async fn $case(pool: sqlx::PgPool) {
                    let h = crate::harness::Harness::postgres(pool).await;
                    crate::$module::$case(&h).await;
                    h.close().await;
                }
            )*
        }

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = crate::harness::Harness::sqlite().await;
                    crate::$module::$case(&h).await;
                    h.close().await;
                }
            )*
        }
    };
}

on_both_backends!(
    schema::fresh_database_needs_no_setup,
    schema::newer_migrations_are_refused,
    lifecycle::happy_path_round_trips_every_field,
    lifecycle::every_terminal_state_has_a_reason_and_events,
    lifecycle::invalid_transitions_are_errors_and_change_nothing,
    claims::duplicate_creation_from_four_tasks_is_one_deployment,
    concurrency::many_creations_at_once_are_each_stored_once,
    concurrency::a_creation_after_the_server_dropped_the_connections_is_stored,
    claims::fifo_within_environment_parallel_across,
    claims::queued_deployment_of_locked_environment_is_never_dropped,
    dry_runs::dry_runs_take_no_turn_and_real_deploys_keep_one_at_a_time,
    history::queries_for_history_and_rollback,
    claims::lapsed_lease_errors_and_frees_the_environment,
    claims::renewed_lease_is_kept,
    claims::the_resolved_sha_is_recorded_once_by_the_holder,
    auto_deploy::auto_deploy_claims_once_and_pauses,
    auto_deploy::auto_deploy_stale_unrecorded_claim_is_taken_over_once,
    history::rollback_target_is_the_last_successful_deploy_task,
    claims::webhook_deliveries_are_recorded_once,
    fencing::runner_is_recorded_by_the_holder_only,
    fencing::a_lease_renewed_in_time_is_never_reaped,
    fencing::a_lapsed_lease_cannot_be_renewed_back,
    concurrency::eight_claimers_two_hundred_deployments_five_environments,
    concurrency::deployments_created_while_claiming_start_in_id_order,
    outbox::outbox_entry_written_rescheduled_delivered_once,
    outbox::outbox_order_per_deployment_and_no_double_delivery,
    logs::log_lines_append_and_read_in_order,
    logs::log_lines_need_their_deployment_and_go_with_it,
    logs::concurrent_log_appenders_get_disjoint_sequences,
    locks::locks_hold_update_expire_and_unlock,
    locks::locks_compare_holders_by_identity_not_by_name,
    wake::wait_for_work_wakes_on_insert_and_on_finish,
    chat::chat_message_is_recorded_and_replaced,
    chat::chat_message_needs_a_deployment_and_ids,
    chat::chat_route_is_used_up_expires_and_is_replaced,
    chat::chat_route_uses_are_taken_once_under_concurrency,
    freezes::freezes_cover_their_scope_and_are_lifted,
    freezes::freezes_end_by_themselves,
    approvals::awaiting_approval_is_never_claimed_until_approved_by_enough,
    approvals::rejection_and_expiry_end_it_rejected_and_nothing_runs,
    approvals::concurrent_approvals_are_counted_once_each,
);

/// Ends the whole test run, failed, when PostgreSQL is not there, saying how to start
/// it: a missing database must never pass for a green (or skipped) suite, nor keep a
/// developer waiting for twenty pool timeouts.
fn require_postgres() {
    if let Err(problem) = postgres_problem() {
        use std::io::Write;
        // Straight to the process's stderr: the test harness would swallow a captured
        // message when the process exits.
        let _ = writeln!(
            std::io::stderr(),
            "\n{problem}: the PostgreSQL store tests need a running PostgreSQL. Start it with \
             `pg_ctlcluster 15 main start` and run \
             `export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres`\n"
        );
        std::process::exit(1);
    }
}

fn postgres_problem() -> Result<(), String> {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => return Err("DATABASE_URL is not set".to_owned()),
    };
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e| format!("DATABASE_URL cannot be parsed ({e})"))?;
    let address = format!("{}:{}", options.get_host(), options.get_port());
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .map(|mut addrs| {
            addrs.any(|addr| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
                    .is_ok()
            })
        })
        .unwrap_or(false);
    if reachable {
        Ok(())
    } else {
        Err(format!("PostgreSQL at {address} is unreachable"))
    }
}

//! Wake-ups: a hint wakes the subscribers it is for — those of its own process once (not
//! again by its own NOTIFY), those of other processes by the NOTIFY — and, when tagged with
//! runner types, only the subscribers that asked for one of them. Untagged hints and
//! NOTIFYs sent by SQL wake everyone on the channel.

use std::time::Duration;

use attune_core::domain::RunnerType::{Builtin, Shell, Workflow};
use attune_core::wakeup::{Channel, Notifier, Tags, Wakeup, LISTENERS_EVERY};
use attune_tests::TestDb;
use sqlx::postgres::PgListener;

/// Long enough for a NOTIFY to reach a listener on this machine many times over.
const SETTLE: Duration = Duration::from_millis(400);

async fn woken(w: &Wakeup, within: Duration) -> bool {
    tokio::time::timeout(within, w.notified()).await.is_ok()
}

/// Which of `wakeups` (named) are woken within `within`, each checked once.
async fn which(wakeups: &[(&'static str, &Wakeup)], within: Duration) -> Vec<&'static str> {
    let checks = wakeups.iter().map(|(name, w)| async move { woken(w, within).await.then_some(*name) });
    futures::future::join_all(checks).await.into_iter().flatten().collect()
}

#[tokio::test]
async fn hints_wake_whom_they_are_for_once_in_this_process_and_others() {
    let db = TestDb::new().await;
    // Two notifiers: two processes, each with its own listening connection and name.
    let here = Notifier::new(db.pool.clone());
    let there = Notifier::new(db.pool.clone());
    let builtin = Tags::runners([Builtin]);
    let here_builtin = here.subscribe_tagged(&[Channel::Scheduled], builtin).await.unwrap();
    let here_shell = here.subscribe_tagged(&[Channel::Scheduled], Tags::runners([Shell])).await.unwrap();
    let here_any = here.subscribe(&[Channel::Scheduled]).await.unwrap();
    let there_builtin = there.subscribe_tagged(&[Channel::Scheduled], builtin).await.unwrap();
    let there_shell = there.subscribe_tagged(&[Channel::Scheduled], Tags::runners([Shell])).await.unwrap();
    let all = [
        ("here builtin", &here_builtin),
        ("here shell", &here_shell),
        ("here any", &here_any),
        ("there builtin", &there_builtin),
        ("there shell", &there_shell),
    ];

    // Tagged builtin: the builtin subscribers of both processes and the untagged one here.
    here.hint(Channel::Scheduled).poke_tagged(builtin);
    assert_eq!(which(&all, SETTLE).await, ["here builtin", "here any", "there builtin"]);
    // Its NOTIFY has reached both listeners by now: the process that sent it skipped it
    // (its subscribers were woken when it was poked), so nobody is woken a second time.
    assert_eq!(which(&all, SETTLE).await, Vec::<&str>::new(), "woken again by its own NOTIFY");

    // From the other process: the same, the other way round.
    there.hint(Channel::Scheduled).poke_tagged(Tags::runners([Shell, Builtin]));
    assert_eq!(which(&all, SETTLE).await, ["here builtin", "here shell", "here any", "there builtin", "there shell"]);
    assert_eq!(which(&all, SETTLE).await, Vec::<&str>::new());

    // No tags: a hint about nothing wakes nobody (and sends no NOTIFY).
    here.hint(Channel::Scheduled).poke_tagged(Tags::NONE);
    assert_eq!(which(&all, SETTLE).await, Vec::<&str>::new());

    // Untagged, and a NOTIFY from SQL (no payload): everyone on the channel.
    there.hint(Channel::Scheduled).poke();
    assert_eq!(which(&all, SETTLE).await.len(), all.len());
    sqlx::query("SELECT pg_notify('attune_scheduled', '')").execute(&db.pool).await.unwrap();
    assert_eq!(which(&all, SETTLE).await.len(), all.len());

    // Another channel wakes none of them.
    here.hint(Channel::Cancel).poke();
    assert_eq!(which(&all, SETTLE).await, Vec::<&str>::new());

    // On the change channel: rows only the change-log readers act on wake the readers, not
    // the workflow engine; a workflow task's result wakes both.
    let engine = here.subscribe_tagged(&[Channel::Change], Tags::runners([Workflow])).await.unwrap();
    let reader = there.subscribe(&[Channel::Change]).await.unwrap();
    let both = [("engine", &engine), ("reader", &reader)];
    here.hint(Channel::Change).poke_tagged(Tags::CHANGES);
    assert_eq!(which(&both, SETTLE).await, ["reader"]);
    here.hint(Channel::Change).poke_tagged(Tags::CHANGES.with(Tags::runners([Workflow])));
    assert_eq!(which(&both, SETTLE).await, ["engine", "reader"]);
}

/// A raw listener (not an Attune process: it does not count as one) sees whether NOTIFYs
/// go out at all.
async fn notify_sent(raw: &mut PgListener, within: Duration) -> Option<String> {
    let got = tokio::time::timeout(within, raw.recv()).await.ok()?;
    Some(got.expect("raw listener").payload().to_string())
}

#[tokio::test]
async fn a_process_alone_sends_no_notify_until_another_listens() {
    let db = TestDb::new().await;
    let mut raw = PgListener::connect_with(&db.pool).await.unwrap();
    raw.listen(Channel::Scheduled.name()).await.unwrap();
    let alone = Notifier::new(db.pool.clone());
    let here = alone.subscribe(&[Channel::Scheduled]).await.unwrap();
    let hint = alone.hint(Channel::Scheduled);
    // Once it has looked (within a second), it knows no other process listens.
    tokio::time::sleep(LISTENERS_EVERY * 2).await;
    hint.poke();
    assert!(woken(&here, SETTLE).await, "its own subscriber is woken directly");
    assert_eq!(notify_sent(&mut raw, SETTLE).await, None, "a NOTIFY nobody else listens for");

    // Another process starts listening: within a second, hints reach it again.
    let other = Notifier::new(db.pool.clone());
    let there = other.subscribe(&[Channel::Scheduled]).await.unwrap();
    tokio::time::sleep(LISTENERS_EVERY * 2).await;
    hint.poke();
    assert!(woken(&there, SETTLE * 2).await, "the other process is woken by the NOTIFY");
    let payload = notify_sent(&mut raw, SETTLE).await.expect("a NOTIFY for the other process");
    assert!(!payload.is_empty(), "the payload names the sender: {payload:?}");

    // It goes away: no NOTIFY again.
    drop((there, other));
    tokio::time::sleep(LISTENERS_EVERY * 3).await;
    hint.poke();
    assert_eq!(notify_sent(&mut raw, SETTLE).await, None);
}

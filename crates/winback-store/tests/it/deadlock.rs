//! A transaction PostgreSQL aborts to break a deadlock is told apart from other failures
//! (`StoreError::is_conflict`), so the store runs it again instead of failing a worker's pass.

use winback_store::StoreError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_is_a_conflict_and_other_errors_are_not() {
    let Some(db) = crate::TestDb::postgres("deadlock_victim").await else {
        return;
    };
    let pool = db.store.pool();
    pool.execute(
        "CREATE TABLE lock_test (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
        &[],
    )
    .await
    .unwrap();
    pool.execute("INSERT INTO lock_test VALUES (1, 0), (2, 0)", &[])
        .await
        .unwrap();
    let mut a = pool.begin().await.unwrap();
    let mut b = pool.begin().await.unwrap();
    a.execute("UPDATE lock_test SET n = n + 1 WHERE id = 1", &[])
        .await
        .unwrap();
    b.execute("UPDATE lock_test SET n = n + 1 WHERE id = 2", &[])
        .await
        .unwrap();
    // Each now waits for the row the other holds: PostgreSQL aborts one of them.
    let (ra, rb) = tokio::join!(
        a.execute("UPDATE lock_test SET n = n + 1 WHERE id = 2", &[]),
        b.execute("UPDATE lock_test SET n = n + 1 WHERE id = 1", &[]),
    );
    let errors: Vec<StoreError> = [ra.err(), rb.err()].into_iter().flatten().collect();
    assert_eq!(errors.len(), 1, "one victim: {errors:?}");
    assert!(errors[0].is_conflict(), "{}", errors[0]);
    drop((a, b));
    let other = pool
        .execute("SELECT n FROM no_such_table", &[])
        .await
        .unwrap_err();
    assert!(!other.is_conflict(), "{other}");
    db.finish().await;
}

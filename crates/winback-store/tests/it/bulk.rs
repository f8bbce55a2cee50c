//! Large SQLite scans read through connections of their own (`bulk.rs`): every row once, in
//! order, across batches; the last committed state only; errors surface, and a scan stopped by
//! its caller leaves the store usable.

use winback_store::StoreError;
use winback_store::db::Val;

use crate::TestDb;

async fn numbers(db: &TestDb, n: i64) {
    let pool = db.store.pool();
    pool.execute(
        "CREATE TABLE scan_test (n INTEGER NOT NULL, label TEXT, x REAL)",
        &[],
    )
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO scan_test (n, label, x) VALUES ($1, $2, $3)",
            &[
                Val::from(i),
                Val::from((i % 3 != 0).then(|| format!("L{i}"))),
                Val::from(Some(i as f64 / 2.0)),
            ],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_scan_reads_every_row_once_across_batches() {
    let db = TestDb::sqlite().await;
    numbers(&db, 5_000).await;
    let (mut seen, mut labels, mut half) = (Vec::new(), 0, 0.0);
    let n = db
        .store
        .pool()
        .for_each(
            "SELECT n, label, x FROM scan_test WHERE n >= $1 ORDER BY n",
            &[Val::from(10i64)],
            |r| {
                seen.push(r.i64("n")?);
                labels += usize::from(r.opt_str("label")?.is_some());
                half += r.opt_f64(2)?.unwrap_or_default();
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 4_990);
    assert_eq!(seen, (10..5_000).collect::<Vec<_>>());
    assert_eq!(labels, (10..5_000).filter(|i| i % 3 != 0).count());
    assert_eq!(half, (10..5_000).map(|i| i as f64 / 2.0).sum::<f64>());
}

#[tokio::test]
async fn a_scan_sees_committed_rows_only() {
    let db = TestDb::sqlite().await;
    numbers(&db, 3).await;
    let pool = db.store.pool();
    let mut writer = pool.begin().await.unwrap();
    writer
        .execute("INSERT INTO scan_test (n) VALUES (99)", &[])
        .await
        .unwrap();
    // A scan returns how many rows it handed over.
    let count = || async {
        pool.for_each("SELECT n FROM scan_test", &[], |_| Ok(()))
            .await
            .unwrap()
    };
    assert_eq!(count().await, 3, "the open write is not read");
    writer.commit().await.unwrap();
    assert_eq!(count().await, 4);
}

#[tokio::test]
async fn scan_errors_surface_and_the_store_stays_usable() {
    let db = TestDb::sqlite().await;
    numbers(&db, 3_000).await;
    let pool = db.store.pool();
    let bad = pool
        .for_each("SELECT nope FROM scan_test", &[], |_| Ok(()))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("nope"), "{bad}");
    // A NULL read as a non-null value names the problem.
    let null = pool
        .for_each("SELECT label FROM scan_test WHERE n = 0", &[], |r| {
            r.text("label").map(drop)
        })
        .await
        .unwrap_err();
    assert!(null.to_string().contains("NULL"), "{null}");
    // The caller stops a scan in its second batch: its error comes back.
    let mut k = 0;
    let stopped = pool
        .for_each("SELECT n FROM scan_test", &[], |_| {
            k += 1;
            if k == 1_500 {
                return Err(StoreError::Data("enough".into()));
            }
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(stopped.to_string(), "stored data: enough");
    assert_eq!(k, 1_500);
    // Scans and writes go on.
    for _ in 0..6 {
        let rows = pool
            .for_each("SELECT n FROM scan_test", &[], |_| Ok(()))
            .await
            .unwrap();
        assert_eq!(rows, 3_000);
    }
    pool.execute("DELETE FROM scan_test WHERE n < 10", &[])
        .await
        .unwrap();
}

/// More reads at once than the scan connections (four) queue for one and all complete, each
/// with its own rows: a tracking burst or a report beside the worker.
#[tokio::test]
async fn more_reads_at_once_than_connections_all_complete() {
    let db = TestDb::sqlite().await;
    numbers(&db, 2_500).await;
    let pool = db.store.pool();
    let reads = (0..16i64).map(|i| async move {
        let scanned = pool
            .for_each(
                "SELECT n FROM scan_test WHERE n >= $1",
                &[Val::from(i * 100)],
                |_| Ok(()),
            )
            .await
            .unwrap();
        let fetched = pool
            .fetch("SELECT n FROM scan_test WHERE n < $1", &[Val::from(i)])
            .await
            .unwrap()
            .len();
        (scanned, fetched)
    });
    let got = futures_util::future::join_all(reads).await;
    let want: Vec<(u64, usize)> = (0..16).map(|i| (2_500 - i * 100, i as usize)).collect();
    assert_eq!(got, want);
}

/// A closed store's file holds everything: the scans' connections close with it, so SQLite
/// folds the write-ahead log into the file (the demo copies the closed file for its simulated
/// months; with a scan's connection left open the copy missed most of the shop).
#[tokio::test]
async fn a_closed_store_leaves_everything_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.db");
    let store = winback_store::SqlStore::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let pool = store.pool();
    pool.execute("CREATE TABLE scan_test (n INTEGER NOT NULL)", &[])
        .await
        .unwrap();
    for i in 0..50i64 {
        pool.execute("INSERT INTO scan_test (n) VALUES ($1)", &[Val::from(i)])
            .await
            .unwrap();
        pool.for_each("SELECT n FROM scan_test", &[], |_| Ok(()))
            .await
            .unwrap();
    }
    store.close().await;
    // Folded in: removed, or emptied when one of sqlx's connection threads closed last.
    let log = std::fs::metadata(dir.path().join("t.db-wal")).map_or(0, |m| m.len());
    assert_eq!(log, 0, "the write-ahead log was folded into the file");
    let copy = dir.path().join("copy.db");
    std::fs::copy(&file, &copy).unwrap();
    let again = winback_store::SqlStore::connect(&format!("sqlite://{}", copy.display()))
        .await
        .unwrap();
    let n = again
        .pool()
        .fetch("SELECT COUNT(*) FROM scan_test", &[])
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap();
    assert_eq!(n, 50);
}

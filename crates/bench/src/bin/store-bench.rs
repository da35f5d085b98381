//! The history store at scale: insert rate (one message per transaction, and batched), the
//! newest-100 page and full-text query latency on a database of N messages, bytes per message.
//!
//!     store-bench --messages 1000000 [--dir /tmp]
//!
//! Prints one JSON object.

use std::time::Instant;

use clap::Parser;
use hubbub_store::{ConversationKind, Store};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const WORDS: &[&str] = &[
    "hello",
    "meeting",
    "tomorrow",
    "café",
    "lunch",
    "project",
    "deadline",
    "Grüße",
    "release",
    "привет",
    "review",
    "coffee",
    "build",
    "ship",
    "today",
    "weekend",
    "question",
    "answer",
];

fn text(i: u64) -> String {
    // Chat-like text of 5–12 words, deterministic.
    let n = 5 + (i % 8) as usize;
    (0..n)
        .map(|k| WORDS[((i * 31 + k as u64 * 7) % WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = args
        .dir
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("hubbub-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("bench.sqlite3");
    let store = Store::open(&path).await.unwrap();
    let hub = store
        .upsert_hub("http://bench/chathub", "bench", "json", None)
        .await
        .unwrap();
    let conv = store
        .conversation(hub, ConversationKind::Broadcast)
        .await
        .unwrap();

    // Single inserts: one message per call (one transaction each), as messages arrive.
    let single = 2_000u64.min(args.messages);
    let t = Instant::now();
    for i in 0..single {
        store
            .receive(conv, &format!("s{i}"), "bob", &text(i))
            .await
            .unwrap();
    }
    let single_rate = single as f64 / t.elapsed().as_secs_f64();

    // Batched: 1,000 messages per transaction (history import, catch-up after a reconnect).
    let batched = args.messages - single;
    let t = Instant::now();
    let mut i = single;
    while i < args.messages {
        let end = (i + 1000).min(args.messages);
        let c = conv.0;
        store
            .call(move |db| {
                let tx = db.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO messages (conversation_id, msg_id, sender, body, outgoing, state, created_at, received_at)
                         VALUES (?1, ?2, ?3, ?4, 0, 'received', ?5, ?5)",
                    )?;
                    for k in i..end {
                        stmt.execute(rusqlite_params(c, k))?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
            .unwrap();
        i = end;
    }
    let batched_rate = batched as f64 / t.elapsed().as_secs_f64();
    store
        .call(|db| Ok(db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?))
        .await
        .unwrap();

    // Reads on the full database.
    let mut newest = Vec::new();
    let mut page_before = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let page = store.newest(conv, 100).await.unwrap();
        newest.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        store
            .before(conv, page[0].seq - 500_000.min(page[0].seq - 1), 100)
            .await
            .unwrap();
        page_before.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut fts = Vec::new();
    let mut hits = 0;
    for q in [
        "deadline",
        "cafe",
        "привет review",
        "coffee weekend",
        "ship today",
    ] {
        for _ in 0..10 {
            let t = Instant::now();
            hits = store.search(Some(hub), q, 50).await.unwrap().len();
            fts.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "scenario": "store",
            "messages": args.messages,
            "insertSinglePerSecond": single_rate,
            "insertBatchedPerSecond": batched_rate,
            "newest100MedianMs": median(newest),
            "page100DeepMedianMs": median(page_before),
            "ftsMedianMs": median(fts),
            "ftsHitsLastQuery": hits,
            "databaseBytes": bytes,
            "bytesPerMessage": bytes as f64 / args.messages as f64,
        })
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn rusqlite_params(conversation: i64, k: u64) -> (i64, String, &'static str, String, i64) {
    (
        conversation,
        format!("b{k}"),
        "bob",
        text(k),
        hubbub_store::now_ms(),
    )
}

//! The QIDO-RS query parser and the SQL it leads to: whatever the query string, parsing never
//! panics, and every query it accepts is one statement SQLite (the engine of the native index
//! and of D1) runs without error, within D1's 100 bound parameters and within the caps
//! (`search::query`): a query that gets past the parser must never be a 500.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wado_core::search::sqlite::SqliteIndex;
use wado_core::search::{sql, Dialect, Level, Query, Scope};

fn index() -> &'static SqliteIndex {
    static INDEX: OnceLock<SqliteIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let index = SqliteIndex::memory().expect("sqlite");
        index
            .execute_now(&wado_core::search::schema::create(Dialect::Sqlite))
            .expect("schema");
        index
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let level = match selector % 3 {
        0 => Level::Study,
        1 => Level::Series,
        _ => Level::Instance,
    };
    let scope = match (selector / 3) % 3 {
        0 => Scope::All,
        1 => Scope::Study(wado_core::Uid::parse("1.2.3").expect("uid")),
        _ => Scope::Series(
            wado_core::Uid::parse("1.2.3").expect("uid"),
            wado_core::Uid::parse("1.2.3.4").expect("uid"),
        ),
    };
    let text = String::from_utf8_lossy(rest);
    let Ok(query) = Query::parse(level, scope, Some(&text)) else {
        return;
    };
    for d in [Dialect::Sqlite, Dialect::Postgres] {
        let s = sql::select(d, 100, "DCM4CHEE", &query, 11);
        assert!(s.params.len() <= 100, "{} parameters", s.params.len());
    }
    let s = sql::select(Dialect::Sqlite, 100, "DCM4CHEE", &query, 11);
    if let Err(e) = index().query_now(&s) {
        panic!("an accepted query fails in SQLite: {e}\n{}", s.sql);
    }
});

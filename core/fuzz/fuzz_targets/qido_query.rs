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
    // The level and scope pairs the router gives: studies across the archive; series across
    // it or in a study; instances across it, in a study or in a series.
    let uid = |u: &str| wado_core::Uid::parse(u).expect("uid");
    let (level, scope) = match selector % 6 {
        0 => (Level::Study, Scope::All),
        1 => (Level::Series, Scope::All),
        2 => (Level::Series, Scope::Study(uid("1.2.3"))),
        3 => (Level::Instance, Scope::All),
        4 => (Level::Instance, Scope::Study(uid("1.2.3"))),
        _ => (Level::Instance, Scope::Series(uid("1.2.3"), uid("1.2.3.4"))),
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

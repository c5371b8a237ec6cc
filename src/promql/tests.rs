//! Engine unit tests over a small in-memory database.

use super::*;
use crate::labels::Labels;
use crate::{Db, FsyncPolicy, Options};

fn db_with(series: &[(&[(&str, &str)], &[(i64, f64)])]) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().fsync(FsyncPolicy::Never)).unwrap();
    let mut app = db.appender();
    for (labels, samples) in series {
        let l = Labels::from_pairs(labels);
        for &(t, v) in samples.iter() {
            app.append(&l, t, v).unwrap();
        }
    }
    app.commit().unwrap();
    (dir, db)
}

#[test]
fn instant_selector_and_arithmetic() {
    let (_d, db) = db_with(&[(
        &[("__name__", "m"), ("a", "1")],
        &[(0, 1.0), (60_000, 2.0)],
    )]);
    let Value::Vector(v) = db.query("m * 2", 60_000).unwrap() else {
        panic!()
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].v, 4.0);
    assert_eq!(v[0].labels, Labels::from_pairs(&[("a", "1")]));
}

//! Builds the migration lists from `migrations/<backend>/`: every file named
//! `<version>_<name>.sql` becomes one step, in version order, its SQL compiled into the binary.
//! The directory is the list, so a migration cannot be written and then forgotten in a
//! hand-kept one (sqlx's own `migrate!` does the same, but only through its `macros` feature,
//! which would compile SQLite a second time for its compile-time checker).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    println!("cargo::rerun-if-changed={}", root.display());
    let mut out = String::new();
    for (backend, constant) in [("sqlite", "SQLITE"), ("postgres", "POSTGRES")] {
        let dir = root.join(backend);
        println!("cargo::rerun-if-changed={}", dir.display());
        let mut steps = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a readable migrations directory").path();
            let file = path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default();
            let parsed = file
                .strip_suffix(".sql")
                .and_then(|stem| stem.split_once('_'))
                .and_then(|(version, name)| Some((version.parse::<i64>().ok()?, name.to_owned())));
            let Some((version, name)) = parsed else {
                panic!(
                    "{}: a migration is named <version>_<name>.sql",
                    path.display()
                );
            };
            steps.push((version, name, path));
        }
        steps.sort_by_key(|(version, _, _)| *version);
        if let Some(w) = steps.windows(2).find(|w| w[0].0 == w[1].0) {
            panic!("{}: two migrations have version {}", dir.display(), w[0].0);
        }
        writeln!(out, "pub(crate) const {constant}: &[Step] = &[").unwrap();
        for (version, name, path) in steps {
            writeln!(
                out,
                "    Step {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

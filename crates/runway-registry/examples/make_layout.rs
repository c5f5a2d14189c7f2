//! Writes an OCI image layout of random layers, for the benchmark:
//! `make_layout <dir> <tag> <layers> <layer-bytes>`.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [dir, tag, layers, size] => layers
            .parse::<usize>()
            .ok()
            .zip(size.parse::<usize>().ok())
            .map(|(l, s)| (dir, tag, l, s)),
        _ => None,
    };
    let Some((dir, tag, layers, size)) = parsed else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: make_layout <dir> <tag> <layers> <layer-bytes>"
        );
        std::process::exit(2);
    };
    match runway_registry::test_util::build_layout(std::path::Path::new(dir), tag, layers, size) {
        Ok(layout) => {
            let _ = writeln!(std::io::stdout(), "{}", layout.manifest.digest);
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "make_layout: {e}");
            std::process::exit(1);
        }
    }
}

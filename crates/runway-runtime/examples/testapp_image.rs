//! Writes the test app as an OCI image layout (tag `testapp`) into the directory given:
//! the example `scripts/up` deploys.
//!
//! `cargo run --release -p runway-runtime --features test-util --example testapp_image -- DIR`

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: testapp_image DIR");
        std::process::exit(2);
    };
    let (_, image) = runway_runtime::test_util::testapp_image(std::path::Path::new(&dir));
    eprintln!(
        "wrote {} ({})",
        std::path::Path::new(&dir).display(),
        image.digest
    );
}

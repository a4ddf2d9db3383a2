//! Compiles the vendored, patched libdeflate compressor (see vendor/libdeflate/README.md).

fn main() {
    let root = std::path::Path::new("vendor/libdeflate");
    cc::Build::new()
        .files(
            [
                "lib/deflate_compress.c",
                "lib/utils.c",
                "lib/x86/cpu_features.c",
                "lib/arm/cpu_features.c",
            ]
            .map(|f| root.join(f)),
        )
        .include(root)
        .warnings(false)
        .compile("deflate_compress");
    println!("cargo:rerun-if-changed=vendor/libdeflate");
}

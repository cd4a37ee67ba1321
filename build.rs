// Embeds every stdlib/*.rhai file into the binary as ("ralf/<name>", source).
use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=stdlib");
    let mut entries: Vec<_> = std::fs::read_dir("stdlib")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.retain(|p: &std::path::PathBuf| p.extension().map(|x| x == "rhai").unwrap_or(false));
    entries.sort();
    let mut out = String::from("pub static EMBEDDED_STDLIB: &[(&str, &str)] = &[\n");
    for p in entries {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p.file_stem().unwrap().to_string_lossy();
        let abs = std::fs::canonicalize(&p).unwrap();
        writeln!(out, "    (\"ralf/{name}\", include_str!({:?})),", abs.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("stdlib.rs");
    std::fs::write(dest, out).unwrap();
}

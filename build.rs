// Embeds every stdlib/*.rhai file into the binary as ("ralf/<name>", source), and the example
// catalog (catalog/projects/*.yaml) as ("<file name>", text) for the lab outside the repository.
use std::fmt::Write;

fn embed(dir: &str, ext: &str, var: &str, key: impl Fn(&std::path::Path) -> String) -> String {
    println!("cargo:rerun-if-changed={dir}");
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.retain(|p: &std::path::PathBuf| p.extension().map(|x| x == ext).unwrap_or(false));
    entries.sort();
    let mut out = format!("pub static {var}: &[(&str, &str)] = &[\n");
    for p in entries {
        println!("cargo:rerun-if-changed={}", p.display());
        let abs = std::fs::canonicalize(&p).unwrap();
        writeln!(
            out,
            "    ({:?}, include_str!({:?})),",
            key(&p),
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    out
}

fn main() {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let stdlib = embed("stdlib", "rhai", "EMBEDDED_STDLIB", |p| {
        format!("ralf/{}", p.file_stem().unwrap().to_string_lossy())
    });
    std::fs::write(out_dir.join("stdlib.rs"), stdlib).unwrap();
    let catalog = embed("catalog/projects", "yaml", "EMBEDDED_CATALOG", |p| {
        p.file_name().unwrap().to_string_lossy().into_owned()
    });
    std::fs::write(out_dir.join("catalog.rs"), catalog).unwrap();
}

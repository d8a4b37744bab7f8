//! The seed's `file_processor`: its entry passes `--input /data/input.csv`, binds
//! `OUTPUT_FORMAT`, sets the working directory `/app`, mounts `/data` read-only and `/output`
//! writable. It converts the input and reports what it saw on stdout, so that a scenario can
//! check every piece of its WASI configuration.

use std::path::Path;

wit_bindgen::generate!({ world: "file-processor", path: "../wit" });

struct FileProcessor;

impl Guest for FileProcessor {
    fn process() -> Result<u32, String> {
        let args: Vec<String> = std::env::args().collect();
        let input = args
            .iter()
            .skip_while(|a| *a != "--input")
            .nth(1)
            .ok_or_else(|| format!("no --input argument in {args:?}"))?;
        let format = std::env::var("OUTPUT_FORMAT").unwrap_or_else(|_| "csv".to_string());
        // The working directory as WASI gives it (wasi:cli/environment.initial-cwd).
        let cwd = wasip2::cli::environment::initial_cwd().unwrap_or_default();
        let text =
            std::fs::read_to_string(input).map_err(|e| format!("cannot read {input}: {e}"))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines.next().map(|h| h.split(',').collect()).unwrap_or_default();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        let converted = match format.as_str() {
            "csv" => text.clone(),
            "json" => to_json(&header, &rows),
            other => return Err(format!("unsupported OUTPUT_FORMAT `{other}` (csv or json)")),
        };
        let stem = Path::new(input)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("output");
        let output = format!("/output/{stem}.{format}");
        std::fs::write(&output, converted).map_err(|e| format!("cannot write {output}: {e}"))?;
        println!(
            "processed {} rows from {input} into {output} (cwd {cwd}, args {})",
            rows.len(),
            args[1..].join(" ")
        );
        Ok(rows.len() as u32)
    }
}

/// `[{"col": "value", ...}, ...]`, values as strings, in header order.
fn to_json(header: &[&str], rows: &[Vec<&str>]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let objects: Vec<String> = rows
        .iter()
        .map(|row| {
            let fields: Vec<String> = header
                .iter()
                .zip(row)
                .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    format!("[{}]\n", objects.join(","))
}

export!(FileProcessor);

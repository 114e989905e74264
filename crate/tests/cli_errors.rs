//! What the command line does with bad paths and bad input: output files that never clobber
//! what they should not, error messages that name the file and stay short, long text through
//! files and stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use llama_webgpu::gguf::{Array, FileSource, GgmlType, GgufFile, GgufWriter, Value};

fn fx(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Run {
    ok: bool,
    /// stdout, raw and as text.
    stdout: Vec<u8>,
    out: String,
    err: String,
}

fn cli(args: &[&str]) -> Run {
    cli_stdin(args, None)
}

fn cli_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || pipe.write_all(&bytes))
    });
    let out = child.wait_with_output().unwrap();
    if let Some(f) = feeder {
        f.join().unwrap().unwrap();
    }
    let run = Run {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout: out.stdout,
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.err.contains("panicked"), "{args:?} panicked: {}", run.err);
    run
}

/// Fails with an `error:` line containing every one of `want` (lower-cased compare).
fn fails_with(args: &[&str], want: &[&str]) -> String {
    let r = cli(args);
    assert!(!r.ok, "{args:?} should fail");
    let e = r.err.to_lowercase();
    assert!(e.starts_with("error:"), "{args:?}: {}", r.err);
    for w in want {
        assert!(e.contains(&w.to_lowercase()), "{args:?}: expected '{w}' in: {}", r.err);
    }
    r.err
}

/// A fresh, empty directory for one test.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lw-cli-errors-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Names in `dir` (to see that no `.partial` file was left behind).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Tensor (name, type) pairs of a GGUF file.
fn types_of(path: &Path) -> Vec<(String, GgmlType)> {
    let f = GgufFile::read(&FileSource::open(path).unwrap()).unwrap();
    f.tensors.iter().map(|t| (t.name.clone(), t.ty)).collect()
}

fn gguf_bytes(metadata: Vec<(String, Value)>) -> Vec<u8> {
    let mut w = GgufWriter::new(metadata, vec![], 32).unwrap();
    let mut v = Vec::new();
    w.write_header(&mut v).unwrap();
    w.finish().unwrap();
    v
}

fn strs(v: &[&str]) -> Value {
    Value::Array(Array::strings(v.iter().map(|s| s.to_string())))
}

/// A header-only GGUF with a working byte-level BPE tokenizer; `edit` changes its metadata.
fn tokenizer_gguf(path: &Path, edit: impl FnOnce(&mut Vec<(String, Value)>)) {
    let mut md = vec![
        ("general.architecture".to_string(), Value::String("llama".into())),
        ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens".to_string(), strs(&["a", "b", "ab"])),
        ("tokenizer.ggml.merges".to_string(), strs(&["a b"])),
    ];
    edit(&mut md);
    std::fs::write(path, gguf_bytes(md)).unwrap();
}

fn set(md: &mut [(String, Value)], key: &str, v: Value) {
    md.iter_mut().find(|(k, _)| k == key).unwrap().1 = v;
}

const MB: usize = 1 << 20;

#[test]
fn a_megabyte_string_in_a_file_makes_a_short_error_line() {
    let dir = scratch("echo");
    let long = "x".repeat(MB);
    let ok = dir.join("ok.gguf");
    tokenizer_gguf(&ok, |_| {});
    let r = cli(&["tokenize", "--model", s(&ok), "--text", "abab"]);
    assert!(r.ok, "the base file must work: {}", r.err);
    assert_eq!(r.out.trim(), "[2,2]");

    type Edit<'a> = Box<dyn Fn(&mut Vec<(String, Value)>) + 'a>;
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("model", "tokenizer model", Box::new(|md| set(md, "tokenizer.ggml.model", Value::String(long.clone())))),
        ("pre", "pre-tokenizer", Box::new(|md| set(md, "tokenizer.ggml.pre", Value::String(long.clone())))),
        ("merge", "malformed merge", Box::new(|md| set(md, "tokenizer.ggml.merges", strs(&[&long])))),
        ("merge-token", "tokenizer", Box::new(|md| set(md, "tokenizer.ggml.merges", strs(&[&format!("a {long}")])))),
        ("arch", "architecture", Box::new(|md| set(md, "general.architecture", Value::String(long.clone())))),
        (
            "dup-key",
            "duplicate metadata key",
            Box::new(|md| md.extend([(long.clone(), Value::U8(1)), (long.clone(), Value::U8(2))])),
        ),
    ];
    for (name, want, edit) in cases {
        let path = dir.join(format!("{name}.gguf"));
        tokenizer_gguf(&path, edit);
        let cmd = if name == "arch" || name == "dup-key" { "info" } else { "tokenize" };
        let args = if cmd == "info" {
            vec!["info", "--model", s(&path)]
        } else {
            vec!["tokenize", "--model", s(&path), "--text", "ab"]
        };
        let err = fails_with(&args, &[want]);
        let longest = err.lines().map(str::len).max().unwrap_or(0);
        assert!(longest <= 1024, "{name}: error line of {longest} bytes: {}…", &err[..300.min(err.len())]);
        // The length said is the string's, or that of the other library's whole message.
        let said = err.split(" bytes, first ").next().and_then(|h| h.rsplit(['(', ' ']).next()?.parse::<usize>().ok());
        assert!(said.is_some_and(|n| n >= MB), "{name}: the length of the cut string is not said: {err}");
        assert!(err.contains(&"x".repeat(20)), "{name}: the start of the string is not shown: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn io_errors_name_their_path() {
    let dir = scratch("paths");
    let missing = dir.join("no-such-dir");
    let tiny = fx("tiny-f32.gguf");
    let out = missing.join("out.npy");
    fails_with(&["logits", "--model", s(&tiny), "--tokens", "1,2", "--out", s(&out)], &[s(&out)]);
    let q = missing.join("q.gguf");
    fails_with(&["quantize", "--type", "q8_0", s(&tiny), s(&q)], &[s(&q)]);
    let syn = missing.join("synth.gguf");
    fails_with(&["synth", "--shape", "llama3.2-1b", "--out", s(&syn)], &[s(&syn)]);
    let tj = missing.join("tokenizer.json");
    fails_with(&["tokenize", "--tokenizer", s(&tj), "--text", "hi"], &[s(&tj)]);
    fails_with(&["info", "--model", s(&dir)], &[s(&dir), "directory"]);
    fails_with(&["bench", "--model", s(&dir)], &[s(&dir), "directory"]);
    let tf = missing.join("text.txt");
    fails_with(&["tokenize", "--tokenizer", s(&fx("tiny-tokenizer.json")), "--text-file", s(&tf)], &[s(&tf)]);
    fails_with(&["generate", "--model", s(&tiny), "--prompt-file", s(&tf)], &[s(&tf)]);
    // Nothing was created on the way.
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_existing_output_file_is_replaced_only_with_force() {
    let dir = scratch("exists");
    let tiny = fx("tiny-f32.gguf");
    let out = dir.join("out.gguf");
    std::fs::write(&out, b"precious").unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    for args in [
        vec!["quantize", "--type", "q8_0", s(&tiny), s(&out)],
        vec!["synth", "--shape", "llama3.2-1b", "--out", s(&out)],
        vec!["logits", "--model", s(&tiny), "--tokens", "1,2", "--out", s(&out)],
    ] {
        fails_with(&args, &[s(&out), "exists", "--force"]);
        assert_eq!(std::fs::read(&out).unwrap(), b"precious", "{args:?}");
    }
    let r = cli(&["quantize", "--type", "q8_0", s(&tiny), s(&out), "--force"]);
    assert!(r.ok, "{}", r.err);
    assert!(types_of(&out).iter().any(|(_, t)| *t == GgmlType::Q8_0));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the replaced file's permissions are kept");
    }
    assert_eq!(names(&dir), ["out.gguf"], "no temporary file left");
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[test]
fn a_symlinked_output_is_followed_and_the_link_kept() {
    let dir = scratch("symlink");
    let tiny = fx("tiny-f32.gguf");
    let target = dir.join("target.gguf");
    let link = dir.join("link.gguf");
    std::fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink("target.gguf", &link).unwrap(); // relative, as `ln -s` makes them
                                                               // The target exists: refused without --force, the target intact.
    fails_with(&["quantize", "--type", "q8_0", s(&tiny), s(&link)], &[s(&link), "exists", "--force"]);
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    // With --force the target is written and the link stays a link.
    let r = cli(&["quantize", "--type", "q8_0", s(&tiny), s(&link), "--force"]);
    assert!(r.ok, "{}", r.err);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("target.gguf"));
    assert!(types_of(&target).iter().any(|(_, t)| *t == GgmlType::Q8_0), "the target was not written");
    // A dangling link: its target is created.
    let dangling = dir.join("dangling.gguf");
    std::os::unix::fs::symlink(dir.join("new.gguf"), &dangling).unwrap();
    let r = cli(&["quantize", "--type", "q8_0", s(&tiny), s(&dangling)]);
    assert!(r.ok, "{}", r.err);
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert_eq!(types_of(&dir.join("new.gguf")), types_of(&target));
    assert_eq!(names(&dir), ["dangling.gguf", "link.gguf", "new.gguf", "target.gguf"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[test]
fn a_fifo_output_is_written_through_and_a_directory_refused() {
    use std::os::unix::fs::FileTypeExt;
    let dir = scratch("fifo");
    let tiny = fx("tiny-f32.gguf");
    let fifo = dir.join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // The reader is another process with a time limit, so a broken writer fails the test
    // instead of hanging it.
    let received = dir.join("received");
    let sink = std::fs::File::create(&received).unwrap();
    let mut reader = Command::new("timeout").arg("120").arg("cat").arg(&fifo).stdout(sink).spawn().unwrap();
    let r = cli(&["quantize", "--type", "q8_0", s(&tiny), s(&fifo)]);
    let status = reader.wait().unwrap();
    assert!(r.ok, "{}", r.err);
    assert!(status.success(), "the reader got no end of file");
    let got = std::fs::read(&received).unwrap();
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    // What came through the pipe is the GGUF a regular file gets.
    let file = dir.join("file.gguf");
    assert!(cli(&["quantize", "--type", "q8_0", s(&tiny), s(&file)]).ok);
    assert!(got == std::fs::read(&file).unwrap(), "the FIFO got {} bytes", got.len());
    let parsed = GgufFile::read(&got.as_slice()).unwrap();
    assert_eq!(parsed.tensors.len(), GgufFile::read(&FileSource::open(&tiny).unwrap()).unwrap().tensors.len());

    // /dev/stdout, a link to the pipe the test reads (through /proc on Linux).
    if Path::new("/dev/stdout").exists() {
        let r = cli(&["quantize", "--type", "q8_0", s(&tiny), "/dev/stdout"]);
        assert!(r.ok, "{}", r.err);
        assert!(r.stdout == got, "/dev/stdout got {} bytes", r.stdout.len());
    }

    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    for args in [
        vec!["quantize", "--type", "q8_0", s(&tiny), s(&sub), "--force"],
        vec!["synth", "--shape", "llama3.2-1b", "--out", s(&sub), "--force"],
        vec!["logits", "--model", s(&tiny), "--tokens", "1", "--out", s(&sub), "--force"],
    ] {
        fails_with(&args, &[s(&sub), "directory"]);
    }
    assert!(std::fs::metadata(&sub).unwrap().is_dir() && names(&sub).is_empty());
    assert_eq!(names(&dir), ["file.gguf", "pipe", "received", "sub"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn quantize_summary_names_the_types_and_the_q8_0_fallback() {
    let dir = scratch("summary");
    let tiny = fx("tiny-f32.gguf"); // 128-wide rows: not whole 256-value K-quant blocks
    for (ty, fallback) in [("q4_k_m", true), ("q6_k", true), ("q8_0", false)] {
        let out = dir.join(format!("{ty}.gguf"));
        let r = cli(&["quantize", "--type", ty, s(&tiny), s(&out)]);
        assert!(r.ok, "{}", r.err);
        // The summary's counts are the types in the file.
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        let written = types_of(&out);
        for (_, t) in &written {
            *counts.entry(t.name()).or_default() += 1;
        }
        let want: Vec<String> = counts.iter().map(|(t, n)| format!("{t}×{n}")).collect();
        let first = r.err.lines().next().unwrap_or("");
        assert!(first.contains(s(&out)) && first.ends_with(&want.join(", ")), "{ty}: {first} vs {want:?}");
        let note = r.err.lines().find(|l| l.contains("fallback"));
        assert_eq!(note.is_some(), fallback, "{ty}: {}", r.err);
        if let Some(note) = note {
            assert!(note.contains("as Q8_0, not") && note.contains("rows of 128") && note.contains("256"), "{note}");
            assert!(written.iter().all(|(_, t)| *t != GgmlType::Q4K && *t != GgmlType::Q6K));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tokenizer_given_a_gguf_suggests_model() {
    let gguf = fx("tiny-f32.gguf");
    fails_with(&["tokenize", "--tokenizer", s(&gguf), "--text", "hi"], &["tokenizer.json", "--model", s(&gguf)]);
    // Any other non-JSON file: the path and what was expected.
    let npy = fx("tiny-q8_0.logits.npy");
    fails_with(&["tokenize", "--tokenizer", s(&npy), "--text", "hi"], &[s(&npy), "tokenizer.json"]);
}

#[test]
fn context_zero_is_rejected() {
    let tiny = fx("tiny-f32.gguf");
    fails_with(&["generate", "--model", s(&tiny), "--tokens", "1", "--context", "0"], &["context must be at least 1"]);
}

#[test]
fn empty_input_is_worded_once() {
    let tiny = fx("tiny-f32.gguf");
    let dir = scratch("empty");
    let out = dir.join("x.npy");
    let a = fails_with(&["logits", "--model", s(&tiny), "--tokens", "", "--out", s(&out)], &["empty input"]);
    let b = fails_with(&["generate", "--model", s(&tiny), "--tokens", ""], &["empty input"]);
    assert_eq!(a, b);
    assert!(names(&dir).is_empty(), "a failed logits run left {:?}", names(&dir));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn text_over_a_megabyte_reaches_tokenize_through_a_file_and_stdin() {
    let dir = scratch("longtext");
    let tj = fx("tiny-tokenizer.json");
    let unit = "Hello world, this is a test of 12345 tokens! Ünïcode too.\n";
    let text = unit.repeat(MB / unit.len() + 100);
    assert!(text.len() > MB);
    let path = dir.join("text.txt");
    std::fs::write(&path, &text).unwrap();
    let via_file = cli(&["tokenize", "--tokenizer", s(&tj), "--text-file", s(&path)]);
    assert!(via_file.ok, "{}", via_file.err);
    let via_stdin = cli_stdin(&["tokenize", "--tokenizer", s(&tj), "--text-file", "-"], Some(text.as_bytes()));
    assert!(via_stdin.ok, "{}", via_stdin.err);
    let ids: Vec<u32> = serde_json::from_str(via_file.out.trim()).unwrap();
    assert_eq!(via_file.out, via_stdin.out);
    // The whole text arrived: its tokens are the unit's, repeated (the unit ends in a newline,
    // where the pre-tokenizer always splits).
    let unit_ids: Vec<u32> =
        serde_json::from_str(cli(&["tokenize", "--tokenizer", s(&tj), "--text", unit]).out.trim()).unwrap();
    let n = text.len() / unit.len();
    assert!(unit_ids.len() > 5 && ids.len() == n * unit_ids.len(), "{} ids for {n} units", ids.len());
    assert!(ids.chunks(unit_ids.len()).all(|c| c == unit_ids));
    // --text and --text-file together are refused; text that is not UTF-8 is named.
    fails_with(&["tokenize", "--tokenizer", s(&tj), "--text", "a", "--text-file", s(&path)], &["not both"]);
    std::fs::write(&path, b"ok \xff bad").unwrap();
    fails_with(&["tokenize", "--tokenizer", s(&tj), "--text-file", s(&path)], &[s(&path), "utf-8", "offset 3"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn generate_takes_the_prompt_from_a_file_or_stdin() {
    let tiny = fx("tiny-f32.gguf");
    let dir = scratch("prompt");
    let prompt = "Hello world, this is";
    let path = dir.join("prompt.txt");
    std::fs::write(&path, prompt).unwrap();
    let base = ["generate", "--model", s(&tiny), "--max-tokens", "2", "--json"];
    let tokens = |r: Run| -> serde_json::Value {
        assert!(r.ok, "{}", r.err);
        let last: serde_json::Value = serde_json::from_str(r.out.lines().last().unwrap()).unwrap();
        last["prompt_tokens"].clone()
    };
    let a = tokens(cli(&[&base[..], &["--prompt", prompt]].concat()));
    let b = tokens(cli(&[&base[..], &["--prompt-file", s(&path)]].concat()));
    let c = tokens(cli_stdin(&[&base[..], &["--prompt-file", "-"]].concat(), Some(prompt.as_bytes())));
    assert!(a.as_array().is_some_and(|v| v.len() > 2), "{a}");
    assert_eq!(a, b);
    assert_eq!(a, c);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_run_that_fails_midway_leaves_no_file_and_keeps_the_old_one() {
    let dir = scratch("midway");
    // A Q8_1 weight: the header is written, then converting it fails (no Q8_1 decoder: it is
    // only ever an activation type in ggml).
    let md = vec![("general.architecture".to_string(), Value::String("test".into()))];
    let tensors = vec![("blk.0.attn_q.weight".to_string(), vec![32u64, 2], GgmlType::Q8_1)];
    let mut w = GgufWriter::new(md, tensors, 32).unwrap();
    let mut buf = Vec::new();
    w.write_header(&mut buf).unwrap();
    w.write_tensor_data(&mut buf, &[0u8; 2 * 36]).unwrap();
    let input = dir.join("in.gguf");
    std::fs::write(&input, &buf).unwrap();
    let new = dir.join("new.gguf");
    fails_with(&["quantize", "--type", "q8_0", s(&input), s(&new)], &["blk.0.attn_q.weight"]);
    assert_eq!(names(&dir), ["in.gguf"]);
    let old = dir.join("old.gguf");
    std::fs::write(&old, b"precious").unwrap();
    fails_with(&["quantize", "--type", "q8_0", s(&input), s(&old), "--force"], &["blk.0.attn_q.weight"]);
    assert_eq!(std::fs::read(&old).unwrap(), b"precious");
    assert_eq!(names(&dir), ["in.gguf", "old.gguf"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_flags_are_named_with_the_nearest_one() {
    let tiny = fx("tiny-f32.gguf");
    let m = s(&tiny);
    for (args, bad, near) in [
        (vec!["generate", "--model", m, "--tokens", "1", "--temprature", "0.7"], "--temprature", "--temperature"),
        (vec!["generate", "--model", m, "--tokens", "1", "--max-token", "5"], "--max-token", "--max-tokens"),
        (vec!["info", "--modle", m], "--modle", "--model"),
        (vec!["tokenize", "--model", m, "--txt", "hi"], "--txt", "--text"),
        (vec!["bench", "--model", m, "--gen-token", "4"], "--gen-token", "--gen-tokens"),
        (vec!["logits", "--model", m, "--tokens", "1", "--out", "/dev/null", "--forse"], "--forse", "--force"),
        // an unknown flag takes no value: `--chat` after it is not swallowed, and named
        (vec!["generate", "--model", m, "--prompt", "hi", "--jsn", "--chat"], "--jsn", "--json"),
    ] {
        let err = fails_with(&args, &[&format!("'{bad}'"), &format!("'{near}'")]);
        assert!(err.lines().count() < 12, "{args:?}: a short message, not the whole help: {err}");
    }
    let err = fails_with(&["generaet", "--model", m], &["unknown command 'generaet'", "'generate'"]);
    assert!(!err.contains("subcommand"), "{err}");
}

#[test]
fn flags_of_other_commands_and_stray_arguments_are_refused() {
    let tiny = fx("tiny-f32.gguf");
    let m = s(&tiny);
    for (args, bad) in [
        // generation flags on a command that does not generate
        (vec!["info", "--model", m, "--max-tokens", "5"], "--max-tokens"),
        (vec!["logits", "--model", m, "--tokens", "1", "--out", "/dev/null", "--chat"], "--chat"),
        // engine flags on commands that load no model
        (vec!["quantize", "--type", "q8_0", "--threads", "2", m, "/dev/null"], "--threads"),
        (vec!["tokenize", "--model", m, "--text", "hi", "--backend", "cpu"], "--backend"),
        (vec!["synth", "--shape", "llama3.2-1b", "--out", "/dev/null", "--context", "8"], "--context"),
        // positionals only where a command takes them
        (vec!["info", "--model", m, "extra.gguf"], "extra.gguf"),
        (vec!["quantize", "--type", "q8_0", m, "/dev/null", "third"], "third"),
        // a value-taking flag at the end
        (vec!["generate", "--model", m, "--tokens"], "--tokens"),
        // --system without --chat would be ignored
        (vec!["generate", "--model", m, "--prompt", "hi", "--system", "be brief"], "--chat"),
    ] {
        fails_with(&args, &[bad]);
    }
}

#[test]
fn help_lists_each_commands_flags() {
    let r = cli(&["--help"]);
    assert!(r.ok, "{}", r.err);
    for c in ["logits", "generate", "tokenize", "info", "bench", "quantize", "synth"] {
        assert!(r.out.contains(c), "{c} missing from:\n{}", r.out);
    }
    let bare = cli(&[]);
    assert!(bare.ok && bare.out == r.out, "no command: the help, status 0: {}", bare.err);
    let r = cli(&["generate", "--help"]);
    assert!(r.ok, "{}", r.err);
    // the command's own flags, the shared engine flags, and the defaults
    for f in ["--temperature", "--max-tokens", "--json-schema", "--model", "--backend", "--threads", "[default: 128]"] {
        assert!(r.out.contains(f), "{f} missing from:\n{}", r.out);
    }
    let r = cli(&["quantize", "--help"]);
    assert!(r.ok && r.out.contains("--type") && !r.out.contains("--threads"), "{}", r.out);
}

#[test]
fn values_may_start_with_a_dash_where_they_are_text_or_numbers() {
    let tiny = fx("tiny-f32.gguf");
    let m = s(&tiny);
    let base = ["generate", "--model", m, "--max-tokens", "1", "--json"];
    let r = cli(&[&base[..], &["--prompt", "-5 degrees", "--stop", "--", "--stop", "-x"]].concat());
    assert!(r.ok, "{}", r.err);
    let tj = fx("tiny-tokenizer.json");
    let a = cli(&["tokenize", "--tokenizer", s(&tj), "--text", "-5 degrees"]);
    let b = cli(&["tokenize", "--tokenizer", s(&tj), "--text=-5 degrees"]);
    assert!(a.ok && a.out == b.out && a.out.len() > 3, "{} {}", a.err, b.err);
    // a negative number reaches the check that refuses it
    fails_with(&[&base[..], &["--tokens", "1", "--top-p", "-0.5"]].concat(), &["top_p"]);
}

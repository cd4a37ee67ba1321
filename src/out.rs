//! Standard output of the listing commands (`history`, `docs`, `config`, `check`, `test`,
//! `doctor`, `lab serve`'s JSON line). Rust ignores SIGPIPE, so a write to a closed pipe fails with
//! EPIPE, and `println!` would panic (exit 101) on `ralf-sh history | head`. Here a closed stdout
//! ends the command quietly with exit code 0, as ripgrep does; those commands hold no state that
//! stopping early could leave half-written. Script output (`print`) does not use this: there a
//! closed stdout drops the text and the run goes on.

use std::io::Write;

/// Write `text` to stdout; on a closed stdout exit 0 at once, on any other error ignore it.
pub(crate) fn write(text: &str) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// `println!` for listing commands (see the module docs).
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write("\n") };
    ($($t:tt)*) => { $crate::out::write(&format!("{}\n", format_args!($($t)*))) };
}

/// `print!` for listing commands (see the module docs).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::out::write(&format!($($t)*)) };
}

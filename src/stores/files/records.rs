//! Records in a log file, streamed: where one ends and the next begins,
//! and a filter that copies the records it keeps byte for byte.
//!
//! A record is one line and the lines that continue it. JSON lines: every
//! line is a record. Text with a declared line time: a record starts at a
//! line that starts with a time of that form, and every line up to the next
//! such line continues it (a stack trace, a multi-line message). Text
//! without one: a line that starts with a space or a tab, or with
//! `Caused by:`, continues the record before it. Lines at the head of a
//! file that continue a record of an earlier file form a record of their
//! own.
//!
//! Memory stays bounded whatever the file holds: a record longer than
//! [`MAX_RECORD`] is not judged; it is copied through unchanged and counted.

use std::io::{self, BufRead, Write};

use super::judge::LineStamp;

/// The longest record judged; longer ones are kept whole and counted as
/// unreadable.
pub(super) const MAX_RECORD: usize = 8 << 20;

/// How lines group into records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// Every line is a record (JSON lines).
    Lines,
    /// A line starting with a space, a tab or `Caused by:` continues the
    /// record before it.
    Indented,
    /// A record starts at a line that starts with a time.
    Stamped,
}

impl Framing {
    /// Whether `line` starts a new record.
    fn starts_record(self, line: &[u8]) -> bool {
        match self {
            Self::Lines => true,
            Self::Indented => !(line.starts_with(b" ") || line.starts_with(b"\t") || line.starts_with(b"Caused by:")),
            Self::Stamped => LineStamp::starts_with_one(line),
        }
    }
}

/// What to do with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Copy it to the output.
    Keep,
    /// Leave it out.
    Drop,
}

/// What one pass over a file saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Pass {
    /// Records judged.
    pub judged: u64,
    /// Records left out.
    pub dropped: u64,
    /// Records too long to judge, copied through.
    pub oversized: u64,
    /// Bytes copied to the output.
    pub kept_bytes: u64,
}

/// Says of whole lines (each ending in `\n`) how many leading bytes are
/// lines the judge would keep, and do nothing else with, without seeing
/// them one by one: a subject's matcher, which finds no trace of the
/// subject in them (`SubjectMatcher::clear_lines`). It is told where in
/// the input the lines begin (bytes from the start), so it can remember
/// what it found ahead and read each byte once. Only where every line is a
/// record ([`Framing::Lines`]).
pub(super) type Clear<'a> = Option<&'a mut dyn FnMut(&[u8], u64) -> usize>;

/// Copies `input` to `out` record by record, leaving out those `judge`
/// drops. Every byte of a kept record, line ends and a missing final
/// newline included, reaches `out` unchanged. Lines `clear` vouches for
/// are copied whole, counted as judged and kept, without `judge`.
pub(super) fn filter(
    input: &mut dyn BufRead,
    framing: Framing,
    out: &mut dyn Write,
    clear: Clear<'_>,
    judge: &mut dyn FnMut(&[u8]) -> Verdict,
) -> io::Result<Pass> {
    filter_numbered(input, framing, out, clear, &mut |_, record| judge(record))
}

/// [`filter`], telling `judge` also the number (from 1) of the line each
/// record starts at.
pub(super) fn filter_numbered(
    input: &mut dyn BufRead,
    framing: Framing,
    out: &mut dyn Write,
    clear: Clear<'_>,
    judge: &mut dyn FnMut(u64, &[u8]) -> Verdict,
) -> io::Result<Pass> {
    let mut clear = clear.filter(|_| framing == Framing::Lines);
    // Bytes of the input consumed so far.
    let mut at = 0u64;
    let mut pass = Pass::default();
    let mut record: Vec<u8> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    // Lines read so far, and the line the current record starts at.
    let (mut lines, mut start) = (0u64, 0u64);
    // The current record is too long to judge: its lines go straight through.
    let mut passing = false;
    let mut emit = |bytes: &[u8], out: &mut dyn Write, pass: &mut Pass| -> io::Result<()> {
        pass.kept_bytes += bytes.len() as u64;
        out.write_all(bytes)
    };
    loop {
        if let Some(clear) = clear.as_mut() {
            // The whole lines the buffer holds that `clear` vouches for go
            // out as they are, in one write.
            let buf = input.fill_buf()?;
            let whole = memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1);
            let vouched = clear(&buf[..whole], at).min(whole);
            let keep = memchr::memrchr(b'\n', &buf[..vouched]).map_or(0, |i| i + 1);
            if keep > 0 {
                let n = memchr::memchr_iter(b'\n', &buf[..keep]).count() as u64;
                lines += n;
                pass.judged += n;
                emit(&buf[..keep], out, &mut pass)?;
                input.consume(keep);
                at += keep as u64;
                continue;
            }
        }
        line.clear();
        let (read, complete) = read_line(input, &mut line, MAX_RECORD)?;
        if read == 0 {
            break;
        }
        at += read as u64;
        lines += 1;
        if framing.starts_record(&line) {
            finish(&mut record, start, out, judge, &mut pass, &mut emit)?;
            passing = false;
        }
        if !passing && complete && record.len() + line.len() <= MAX_RECORD {
            if framing == Framing::Lines {
                // One line, one record: judge it where it lies.
                finish(&mut line, lines, out, judge, &mut pass, &mut emit)?;
            } else {
                if record.is_empty() {
                    start = lines;
                }
                record.extend_from_slice(&line);
            }
            continue;
        }
        if !passing {
            pass.oversized += 1;
            emit(&record, out, &mut pass)?;
            record.clear();
            passing = true;
        }
        emit(&line, out, &mut pass)?;
        if !complete {
            let rest = copy_rest_of_line(input, out)?;
            pass.kept_bytes += rest;
            at += rest;
        }
    }
    finish(&mut record, start, out, judge, &mut pass, &mut emit)?;
    Ok(pass)
}

type Emit<'a> = dyn FnMut(&[u8], &mut dyn Write, &mut Pass) -> io::Result<()> + 'a;

fn finish(
    record: &mut Vec<u8>,
    start: u64,
    out: &mut dyn Write,
    judge: &mut dyn FnMut(u64, &[u8]) -> Verdict,
    pass: &mut Pass,
    emit: &mut Emit<'_>,
) -> io::Result<()> {
    if record.is_empty() {
        return Ok(());
    }
    pass.judged += 1;
    match judge(start, record) {
        Verdict::Keep => emit(record, out, pass)?,
        Verdict::Drop => pass.dropped += 1,
    }
    record.clear();
    Ok(())
}

/// Appends one line, through its `\n`, to `line`, but no more than
/// `limit` bytes in all. Returns the bytes appended and whether the line
/// ended (a newline, or the end of the input).
fn read_line(input: &mut dyn BufRead, line: &mut Vec<u8>, limit: usize) -> io::Result<(usize, bool)> {
    let mut read = 0;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok((read, true));
        }
        let room = limit.saturating_sub(line.len());
        if let Some(i) = memchr::memchr(b'\n', buf)
            && i < room
        {
            line.extend_from_slice(&buf[..=i]);
            input.consume(i + 1);
            return Ok((read + i + 1, true));
        }
        let take = buf.len().min(room);
        if take == 0 {
            return Ok((read, false));
        }
        line.extend_from_slice(&buf[..take]);
        input.consume(take);
        read += take;
    }
}

/// Copies the rest of the current line, through its `\n`, to `out`.
fn copy_rest_of_line(input: &mut dyn BufRead, out: &mut dyn Write) -> io::Result<u64> {
    let mut copied = 0u64;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(copied);
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        out.write_all(&buf[..take])?;
        input.consume(take);
        copied += take as u64;
        if done {
            return Ok(copied);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str, framing: Framing) -> Vec<String> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        filter(&mut text.as_bytes(), framing, &mut out, None, &mut |r: &[u8]| {
            seen.push(String::from_utf8(r.to_vec()).unwrap());
            Verdict::Keep
        })
        .unwrap();
        assert_eq!(out, text.as_bytes(), "kept records are copied unchanged");
        seen
    }

    #[test]
    fn a_stack_trace_belongs_to_the_line_it_follows() {
        let log = "ERROR boom\n\tat a.B(B.java:1)\nCaused by: x\n\t... 3 more\nINFO next\n  indented\nlast";
        assert_eq!(
            records(log, Framing::Indented),
            ["ERROR boom\n\tat a.B(B.java:1)\nCaused by: x\n\t... 3 more\n", "INFO next\n  indented\n", "last"]
        );
        assert_eq!(records(log, Framing::Lines).len(), 7);
    }

    #[test]
    fn with_line_times_a_record_runs_to_the_next_time() {
        let log = "  head\n2024-01-01T00:00:00Z a\njava.lang.X: y\nat z\n[2024-01-02 10:00] b\n2024-01-03 c\n";
        assert_eq!(
            records(log, Framing::Stamped),
            ["  head\n", "2024-01-01T00:00:00Z a\njava.lang.X: y\nat z\n", "[2024-01-02 10:00] b\n", "2024-01-03 c\n"]
        );
    }

    #[test]
    fn each_record_is_told_the_line_it_starts_at() {
        let log = "ERROR boom\n\tat a.B\n\tat c.D\nINFO next\nlast";
        let mut starts = Vec::new();
        filter_numbered(&mut log.as_bytes(), Framing::Indented, &mut io::sink(), None, &mut |n, _| {
            starts.push(n);
            Verdict::Keep
        })
        .unwrap();
        assert_eq!(starts, [1, 4, 5]);
        let long = "x".repeat(MAX_RECORD + 10);
        let log = format!("a\n{long}\nb\n");
        let mut starts = Vec::new();
        filter_numbered(&mut log.as_bytes(), Framing::Lines, &mut io::sink(), None, &mut |n, _| {
            starts.push(n);
            Verdict::Keep
        })
        .unwrap();
        assert_eq!(starts, [1, 3], "a line too long to judge still counts as a line");
    }

    #[test]
    fn records_too_long_to_judge_are_copied_through() {
        let long = "x".repeat(MAX_RECORD + 10);
        let log = format!("a\n{long}\n continued\nb\n");
        let mut judged = Vec::new();
        let mut out = Vec::new();
        let pass = filter(&mut log.as_bytes(), Framing::Indented, &mut out, None, &mut |r: &[u8]| {
            judged.push(r.len());
            Verdict::Drop
        })
        .unwrap();
        assert_eq!(judged, [2, 2], "only a and b are judged");
        assert_eq!(pass.oversized, 1);
        assert_eq!(out, format!("{long}\n continued\n").as_bytes());
    }
}

//! The exit codes, as `--help` and the README list them: one table, the
//! constants the commands return beside it.

/// Shown after `paydrop --help`; the README's "Exit codes" block is the
/// same text (a test compares them).
pub const TABLE: &str = "\
Exit codes:
  0  success (a closed stdout pipe, as with `| head`, ends quietly with 0)
  1  rows with errors (validate, submit); something needs attention
     (reconcile, report checks, a doctor check failed); a payout refused
     by its rules
  2  unusable input or settings: unreadable file, bad address, missing key,
     unknown batch; any other error
  3  already submitted: the content, some of its rows, or another process
     is sending it; a payout range already ordered
  4  rejected by the provider (submit, payout trigger, export)
  5  outcome unknown: the provider may have it (submit, status, payout
     status, export timeout)
  6  not sent: nothing reached the provider, or it said it did not process
     it (submit)";

//! Files that hold full card numbers, other than the merchant's own payment
//! files: the retry file and generated test files. They are created readable
//! and writable by their owner only (0600): the mode is given to `open`, so
//! there is no moment in which another user could open the file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Permissions of a file holding full card numbers.
#[cfg(unix)]
pub const MODE: u32 = 0o600;

/// Creates `path` (or truncates it) for writing, owner-only. A file that
/// already existed with wider permissions is narrowed to 0600 through the
/// open handle before a byte is written.
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("retry.csv");
/// paydrop::private::create(&path).unwrap();
/// let mode = std::fs::metadata(&path).unwrap().permissions().mode();
/// assert_eq!(mode & 0o777, 0o600);
/// # }
/// ```
pub fn create(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(MODE);
        let file = options.open(path)?;
        let perms = file.metadata()?.permissions();
        if perms.mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(MODE))?;
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_existing_readable_file_is_narrowed_before_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.csv");
        std::fs::write(&path, "4506349116543218\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = create(&path).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 0, "truncated");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, MODE);
    }
}

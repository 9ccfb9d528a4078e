//! An export that arrives as a zip archive of CSV/TSV files (the Partner
//! Center sample's `Utils.cs` saves "the export zip file" and opens it with
//! `ZipArchive`, "csv files in the downloaded zip file";
//! `docs/providers/receiving.md` §1.4): its entries are read one after
//! another straight off the download with `async_zip`'s stream reader, which
//! never seeks and holds no entry whole; every `.csv` / `.tsv` / `.txt`
//! entry goes through the same [`RowReader`], other entries are skipped.

use async_zip::base::read::stream::ZipFileReader;
use tokio::io::AsyncBufRead;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::rows::{RowReader, Sink};
use super::ExportError;

fn zip_error(e: async_zip::error::ZipError) -> ExportError {
    ExportError::Zip(e.to_string())
}

/// Whether an entry holds rows.
fn is_table(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.ends_with('/') && [".csv", ".tsv", ".txt"].iter().any(|e| lower.ends_with(e))
}

/// Reads every table entry of the archive `input` into `rows` and `sink`.
pub(super) async fn read_entries<R>(
    input: R,
    rows: &mut RowReader,
    sink: &mut Sink,
) -> Result<(), ExportError>
where
    R: AsyncBufRead + Send + Unpin,
{
    let mut zip = ZipFileReader::with_tokio(input);
    while let Some(mut entry) = zip.next_with_entry().await.map_err(zip_error)? {
        let name = entry
            .reader()
            .entry()
            .filename()
            .as_str()
            .map_err(zip_error)?
            .to_string();
        if is_table(&name) {
            tracing::info!(entry = %name, "reading a file of the export archive");
            rows.read(entry.reader_mut().compat(), Some(&name), sink)
                .await?;
            zip = entry.done().await.map_err(zip_error)?;
        } else {
            tracing::info!(entry = %name, "skipping an archive entry that is not CSV/TSV");
            zip = entry.skip().await.map_err(zip_error)?;
        }
    }
    Ok(())
}

//! Finding and loading a sans font: the greeter's form and the compositor's title bars.

use std::path::{Path, PathBuf};

use fontdue::{Font, FontSettings};

/// Tried in order when no `--font` is given: DejaVu Sans (Debian's `fonts-dejavu-core`, which
/// the project's scripts install), then the usual places other distributions keep a sans font.
pub const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
];

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FontError {
    #[error("no font found: tried {}", CANDIDATES.join(", "))]
    #[diagnostic(help(
        "install DejaVu Sans (Debian: apt-get install fonts-dejavu-core) or pass --font PATH"
    ))]
    NotFound,
    #[error("cannot read the font {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a font fontdue can read: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
}

/// The font to use: `explicit` as given (it must exist), else the first candidate that exists.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, FontError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    first_existing(CANDIDATES.iter().map(Path::new)).ok_or(FontError::NotFound)
}

fn first_existing<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
    paths
        .into_iter()
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}

pub fn load(path: &Path) -> Result<Font, FontError> {
    let bytes = std::fs::read(path).map_err(|source| FontError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Font::from_bytes(bytes, FontSettings::default()).map_err(|reason| FontError::Parse {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_existing_candidate_wins() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("b.ttf");
        let c = dir.path().join("c.ttf");
        std::fs::write(&b, b"").unwrap();
        std::fs::write(&c, b"").unwrap();
        let missing = dir.path().join("a.ttf");
        assert_eq!(
            first_existing([missing.as_path(), b.as_path(), c.as_path()]),
            Some(b)
        );
        assert_eq!(first_existing([missing.as_path(), dir.path()]), None);
    }

    #[test]
    fn a_missing_or_broken_font_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.ttf");
        let err = load(&missing).unwrap_err();
        assert!(err.to_string().contains("nope.ttf"), "{err}");
        let junk = dir.path().join("junk.ttf");
        std::fs::write(&junk, b"not a font").unwrap();
        assert!(matches!(load(&junk), Err(FontError::Parse { .. })));
    }
}

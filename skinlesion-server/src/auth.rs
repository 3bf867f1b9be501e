//! Bearer-token authentication (RFC 6750) for the routes that see patient images or server
//! internals. Tokens come from a file, one per line, reloaded on SIGHUP; only their SHA-256
//! digests are kept, compared in constant time, and no token reaches a log line.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use hyper::header::{HeaderMap, AUTHORIZATION};
use sha2::{Digest, Sha256};

/// Shortest token accepted: a short token is a guessable one.
pub const MIN_TOKEN_LEN: usize = 16;

/// Who may use the protected routes.
pub enum Access {
    /// Anyone who can reach the port (loopback by default, or `--no-auth`).
    Open,
    /// Clients that present one of these tokens.
    Tokens(ApiTokens),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not one of ours.
    Invalid,
}

impl Access {
    /// Checks the request's `Authorization` header.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), Denied> {
        match self {
            Access::Open => Ok(()),
            Access::Tokens(tokens) => tokens.authorize(headers),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Access::Open => "off".to_owned(),
            Access::Tokens(t) => format!("bearer tokens ({} loaded)", t.len()),
        }
    }
}

/// A token file that cannot serve: the server refuses to start (or keeps its previous
/// tokens, on a reload) rather than lock everyone out or let everyone in.
#[derive(Debug)]
pub enum TokenFileError {
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    Empty {
        path: PathBuf,
    },
    /// Line numbers count from 1; the token itself is never shown.
    BadToken {
        path: PathBuf,
        line: usize,
    },
}

impl std::fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable { path, error } => {
                write!(f, "cannot read the token file {}: {error}", path.display())
            }
            Self::Empty { path } => write!(f, "the token file {} has no tokens", path.display()),
            Self::BadToken { path, line } => write!(
                f,
                "{}:{line}: a token must be at least {MIN_TOKEN_LEN} visible ASCII characters \
                 without spaces",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TokenFileError {}

pub struct ApiTokens {
    path: PathBuf,
    digests: RwLock<Vec<[u8; 32]>>,
}

impl ApiTokens {
    /// Reads the token file: one token per line; blank lines and `#` comments are skipped.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        Ok(Self {
            path: path.to_owned(),
            digests: RwLock::new(read_digests(path)?),
        })
    }

    /// Rereads the file; on an error the previous tokens stay in force.
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        let digests = read_digests(&self.path)?;
        let count = digests.len();
        *self.digests.write().unwrap_or_else(|e| e.into_inner()) = digests;
        Ok(count)
    }

    pub fn len(&self) -> usize {
        self.digests.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let presented = bearer(headers).ok_or(Denied::Missing)?;
        let digest = digest(presented);
        let digests = self.digests.read().unwrap_or_else(|e| e.into_inner());
        // Every digest is compared, without an early exit: the time taken says nothing
        // about which token, or how much of one, matched.
        let matches = digests
            .iter()
            .fold(0u8, |found, d| found | constant_time_eq(d, &digest) as u8);
        match matches {
            1 => Ok(()),
            _ => Err(Denied::Invalid),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn read_digests(path: &Path) -> Result<Vec<[u8; 32]>, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| TokenFileError::Unreadable {
        path: path.to_owned(),
        error,
    })?;
    let mut digests = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let token = line.trim();
        if token.is_empty() || token.starts_with('#') {
            continue;
        }
        let visible = token.bytes().all(|b| b.is_ascii_graphic());
        if token.len() < MIN_TOKEN_LEN || !visible {
            return Err(TokenFileError::BadToken {
                path: path.to_owned(),
                line: i + 1,
            });
        }
        digests.push(digest(token.as_bytes()));
    }
    match digests.is_empty() {
        true => Err(TokenFileError::Empty {
            path: path.to_owned(),
        }),
        false => Ok(digests),
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const TOKEN: &str = "s3cret-token-for-tests";

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        h
    }

    fn file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("tokens");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn only_a_listed_bearer_token_is_let_in() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("# ops team\n\n  {TOKEN}  \nanother-token-0123456789\n");
        let tokens = ApiTokens::load(&file(dir.path(), &text)).unwrap();
        assert_eq!(tokens.len(), 2);
        let access = Access::Tokens(tokens);
        assert_eq!(
            access.authorize(&headers(&format!("Bearer {TOKEN}"))),
            Ok(())
        );
        assert_eq!(
            access.authorize(&headers(&format!("bearer {TOKEN}"))),
            Ok(())
        );
        assert_eq!(access.authorize(&HeaderMap::new()), Err(Denied::Missing));
        assert_eq!(access.authorize(&headers("Bearer ")), Err(Denied::Missing));
        assert_eq!(access.authorize(&headers(TOKEN)), Err(Denied::Missing));
        let basic = format!("Basic {TOKEN}");
        assert_eq!(access.authorize(&headers(&basic)), Err(Denied::Missing));
        let wrong = format!("Bearer {TOKEN}x");
        assert_eq!(access.authorize(&headers(&wrong)), Err(Denied::Invalid));
        let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
        assert_eq!(access.authorize(&headers(&prefix)), Err(Denied::Invalid));
        assert_eq!(Access::Open.authorize(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn a_reload_replaces_the_tokens_and_a_broken_file_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), TOKEN);
        let tokens = ApiTokens::load(&path).unwrap();
        let new = "rotated-token-0123456789";
        std::fs::write(&path, new).unwrap();
        assert_eq!(tokens.reload().unwrap(), 1);
        let access = Access::Tokens(tokens);
        let old = headers(&format!("Bearer {TOKEN}"));
        assert_eq!(access.authorize(&old), Err(Denied::Invalid));
        let rotated = headers(&format!("Bearer {new}"));
        assert_eq!(access.authorize(&rotated), Ok(()));
        std::fs::write(&path, "\n# nothing\n").unwrap();
        let Access::Tokens(tokens) = &access else {
            unreachable!()
        };
        assert!(matches!(tokens.reload(), Err(TokenFileError::Empty { .. })));
        assert_eq!(access.authorize(&rotated), Ok(()));
    }

    #[test]
    fn unusable_token_files_are_refused_without_showing_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ApiTokens::load(&dir.path().join("absent")).err().unwrap();
        assert!(
            matches!(missing, TokenFileError::Unreadable { .. }),
            "{missing}"
        );
        let empty = ApiTokens::load(&file(dir.path(), "# none yet\n"))
            .err()
            .unwrap();
        assert!(matches!(empty, TokenFileError::Empty { .. }), "{empty}");
        for bad in ["short", "has a space inside it", "naïve-token-0123456789"] {
            let text = format!("{TOKEN}\n{bad}\n");
            let err = ApiTokens::load(&file(dir.path(), &text)).err().unwrap();
            assert!(
                matches!(err, TokenFileError::BadToken { line: 2, .. }),
                "{err}"
            );
            assert!(!err.to_string().contains(bad), "{err}");
        }
    }
}

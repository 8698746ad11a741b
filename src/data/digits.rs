//! The UCI optical handwritten digits (1,797 8x8 grey-scale images, 10 classes) from
//! `data/digits.csv.gz`: loading (gzip CSV, 64 pixels 0..16 then the label per row),
//! pixels scaled to [0, 1], a deterministic shuffled train/test split and minibatches as
//! tensors ready to feed.
//!
//! Invariants: a loaded [`Digits`] has `images.len() == len() * PIXELS` and every label
//! below [`CLASSES`]; a missing, truncated or malformed file is an error naming the file
//! (and line), never a panic; splits and batch orders depend only on their seeds.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use rill_graph::{Code, Error, Result, Tensor};

use super::Rng;

/// Pixels per image (8x8).
pub const PIXELS: usize = 64;
/// Image side.
pub const SIDE: usize = 8;
/// Number of classes (digits 0..9).
pub const CLASSES: usize = 10;
/// The largest raw pixel value (a count of "on" pixels in a 4x4 block).
const MAX_PIXEL: f32 = 16.0;

/// The data set's path in this repository.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz")
}

/// Images (row-major, `[len, 64]`, scaled to [0, 1]) and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Digits {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

/// One minibatch: `images` is f32 `[n, 64]`, `labels` int64 `[n]`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
}

fn data_loss(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::new(Code::DataLoss, format!("{}: {msg}", path.display()))
}

/// Loads a digits file (gzip-compressed CSV).
pub fn load(path: &Path) -> Result<Digits> {
    let file = std::fs::File::open(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            Code::NotFound
        } else {
            Code::Unavailable
        };
        Error::new(
            code,
            format!(
                "cannot open the digits data set {}: {e} (it ships in the repository as \
                 data/digits.csv.gz)",
                path.display()
            ),
        )
    })?;
    parse_gz(file, path)
}

/// Parses gzip-compressed digits CSV from `reader`; `path` names it in errors.
pub fn parse_gz(reader: impl Read, path: &Path) -> Result<Digits> {
    parse_csv(BufReader::new(GzDecoder::new(reader)), path)
}

/// Parses uncompressed digits CSV; `path` names the source in errors.
pub fn parse_csv(reader: impl BufRead, path: &Path) -> Result<Digits> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| data_loss(path, format!("not a valid gzip CSV file: {e}")))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut count = 0;
        for field in line.split(',') {
            count += 1;
            if count > PIXELS + 1 {
                break;
            }
            let value: u32 = field.trim().parse().map_err(|_| {
                data_loss(
                    path,
                    format!("line {line_no}: '{field}' is not a non-negative integer"),
                )
            })?;
            if count <= PIXELS {
                if value as f32 > MAX_PIXEL {
                    return Err(data_loss(
                        path,
                        format!("line {line_no}: pixel {value} is outside 0..=16"),
                    ));
                }
                images.push(value as f32 / MAX_PIXEL);
            } else {
                if value as usize >= CLASSES {
                    return Err(data_loss(
                        path,
                        format!("line {line_no}: label {value} is not a digit 0..=9"),
                    ));
                }
                labels.push(value as u8);
            }
        }
        if count != PIXELS + 1 {
            return Err(data_loss(
                path,
                format!(
                    "line {line_no}: expected {} comma-separated values (64 pixels and a \
                     label), found {}",
                    PIXELS + 1,
                    if count > PIXELS + 1 {
                        "more".to_string()
                    } else {
                        count.to_string()
                    }
                ),
            ));
        }
    }
    if labels.is_empty() {
        return Err(data_loss(path, "no images in the file"));
    }
    Ok(Digits { images, labels })
}

impl Digits {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Digits {
        let mut images = Vec::with_capacity(indices.len() * PIXELS);
        for &i in indices {
            images.extend_from_slice(&self.images[i * PIXELS..(i + 1) * PIXELS]);
        }
        Digits {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// Shuffles with `seed` and splits into `(train, test)`, `test_fraction` of the images
    /// (rounded, at least one each side) going to the test set.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Digits, Digits)> {
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(Error::invalid_argument(format!(
                "the test fraction must be strictly between 0 and 1, got {test_fraction}"
            )));
        }
        if self.len() < 2 {
            return Err(Error::invalid_argument(format!(
                "cannot split {} image(s) into a training and a test set",
                self.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        let n_test =
            ((self.len() as f64 * test_fraction).round() as usize).clamp(1, self.len() - 1);
        let (test, train) = order.split_at(n_test);
        Ok((self.subset(train), self.subset(test)))
    }

    /// The whole set as one batch.
    pub fn as_batch(&self) -> Result<Batch> {
        self.batch(&(0..self.len()).collect::<Vec<_>>())
    }

    fn batch(&self, indices: &[usize]) -> Result<Batch> {
        let part = self.subset(indices);
        let n = part.len();
        Ok(Batch {
            images: Tensor::new(&[n, PIXELS], part.images)?,
            labels: Tensor::new(
                &[n],
                part.labels.iter().map(|&l| l as i64).collect::<Vec<i64>>(),
            )?,
        })
    }

    /// Minibatches of `batch_size` (the last one may be smaller) in an order shuffled by
    /// `(seed, epoch)`: each epoch sees every image once, and an epoch's order does not
    /// depend on what ran before it (so a resumed run sees the same batches).
    pub fn batches(&self, batch_size: usize, seed: u64, epoch: u64) -> Result<Batches<'_>> {
        if batch_size == 0 {
            return Err(Error::invalid_argument("the batch size must be at least 1"));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::derived(seed, epoch + 1).shuffle(&mut order);
        Ok(Batches {
            data: self,
            order,
            batch_size,
            next: 0,
        })
    }

    /// Number of minibatches per epoch at `batch_size`.
    pub fn batches_per_epoch(&self, batch_size: usize) -> usize {
        self.len().div_ceil(batch_size.max(1))
    }
}

/// An epoch's minibatches, from [`Digits::batches`].
pub struct Batches<'a> {
    data: &'a Digits,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let batch = self.data.batch(&self.order[self.next..end]);
        self.next = end;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.order.len() - self.next).div_ceil(self.batch_size);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: u32, fill: u32) -> String {
        let mut v: Vec<String> = (0..PIXELS).map(|_| fill.to_string()).collect();
        v.push(label.to_string());
        v.join(",")
    }

    fn parse(text: &str) -> Result<Digits> {
        parse_csv(text.as_bytes(), Path::new("test.csv"))
    }

    #[test]
    fn loads_the_shipped_file() {
        let d = load(&default_path()).unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.images.len(), 1797 * PIXELS);
        assert!(d.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert_eq!(d.labels[..3], [0, 1, 2]);
        let mut counts = [0usize; CLASSES];
        d.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(
            counts.iter().all(|&c| (170..=190).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn split_is_deterministic_and_disjoint() {
        let text: Vec<String> = (0..50).map(|i| row(i % 10, i % 17)).collect();
        let d = parse(&text.join("\n")).unwrap();
        let (train, test) = d.split(0.2, 42).unwrap();
        assert_eq!((train.len(), test.len()), (40, 10));
        assert_eq!(d.split(0.2, 42).unwrap().1, test);
        assert_ne!(d.split(0.2, 43).unwrap().1, test);
        assert!(d.split(0.0, 1).is_err());
        assert!(d.split(1.0, 1).is_err());
    }

    #[test]
    fn batches_cover_the_epoch() {
        let text: Vec<String> = (0..10).map(|i| row(i, i)).collect();
        let d = parse(&text.join("\n")).unwrap();
        let batches: Vec<Batch> = d.batches(4, 1, 0).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(d.batches_per_epoch(4), 3);
        assert_eq!(batches[2].images.dims(), &[2, PIXELS]);
        let mut seen: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.labels.as_slice::<i64>().unwrap().to_vec())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // Pixel value i/16 travels with label i.
        let b = &batches[0];
        let px = b.images.as_slice::<f32>().unwrap();
        for (k, &l) in b.labels.as_slice::<i64>().unwrap().iter().enumerate() {
            assert_eq!(px[k * PIXELS], l as f32 / 16.0);
        }
        assert!(d.batches(0, 1, 0).is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        let missing = load(Path::new("/nonexistent/digits.csv.gz")).unwrap_err();
        assert_eq!(missing.code, Code::NotFound);
        assert!(missing.message.contains("/nonexistent/digits.csv.gz"));
        let not_gzip = parse_gz(&b"hello, world"[..], Path::new("x.gz")).unwrap_err();
        assert_eq!(not_gzip.code, Code::DataLoss);
        let truncated = {
            let bytes = std::fs::read(default_path()).unwrap();
            parse_gz(&bytes[..bytes.len() / 2], Path::new("half.gz")).unwrap_err()
        };
        assert_eq!(truncated.code, Code::DataLoss);
        assert!(parse("").unwrap_err().message.contains("no images"));
        assert!(parse("1,2,3").unwrap_err().message.contains("line 1"));
        let too_long = format!("{},0", row(1, 0));
        assert!(parse(&too_long).unwrap_err().message.contains("more"));
        assert!(parse(&row(10, 0)).unwrap_err().message.contains("label 10"));
        assert!(parse(&row(1, 17)).unwrap_err().message.contains("pixel 17"));
        assert!(parse(&row(1, 0).replace("0,", "x,"))
            .unwrap_err()
            .message
            .contains("'x'"));
    }
}

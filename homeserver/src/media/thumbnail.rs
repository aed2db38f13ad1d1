//! Thumbnails: which size to make for a request, and making it — decoding bounded by a pixel
//! limit checked from the image header before any pixel is decoded.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Exactly the requested size, cropping what does not fit.
    Crop,
    /// Fits inside the requested size, keeping the aspect ratio.
    Scale,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Scale => "scale",
        }
    }
}

/// The sizes we make, as Synapse does by default; a request is served by the nearest one.
pub const SIZES: [(u32, u32, Method); 5] = [
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// The smallest of our sizes at least as big as requested, preferring the requested method;
/// the largest size when none is big enough.
pub fn choose(width: u32, height: u32, method: Method) -> (u32, u32, Method) {
    let big_enough = |(w, h, _): &&(u32, u32, Method)| *w >= width && *h >= height;
    let area = |(w, h, _): &&(u32, u32, Method)| u64::from(*w) * u64::from(*h);
    SIZES
        .iter()
        .filter(|size| size.2 == method)
        .filter(big_enough)
        .min_by_key(area)
        .or_else(|| SIZES.iter().filter(big_enough).min_by_key(area))
        .copied()
        .unwrap_or(SIZES[SIZES.len() - 1])
}

fn format_of(content_type: &str) -> Option<ImageFormat> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" | "image/jpg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Whether we can make thumbnails of this content type.
pub fn is_thumbnailable(content_type: &str) -> bool {
    format_of(content_type).is_some()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThumbnailError {
    #[error("the image is {width}x{height}, more pixels than allowed")]
    TooLarge { width: u32, height: u32 },
    #[error("not a decodable image: {0}")]
    Undecodable(String),
    #[error("no thumbnails for this content type")]
    Unsupported,
}

pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Makes a thumbnail of `bytes`, never larger than the original. CPU-bound: call it from a
/// blocking thread.
pub fn make(
    bytes: &[u8],
    content_type: &str,
    (width, height, method): (u32, u32, Method),
    max_pixels: u64,
) -> Result<Thumbnail, ThumbnailError> {
    let format = format_of(content_type).ok_or(ThumbnailError::Unsupported)?;
    let undecodable = |e: image::ImageError| ThumbnailError::Undecodable(e.to_string());
    // The header alone says how big the decoded image would be: refuse before decoding.
    let (original_width, original_height) =
        ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().map_err(undecodable)?;
    if u64::from(original_width) * u64::from(original_height) > max_pixels {
        return Err(ThumbnailError::TooLarge { width: original_width, height: original_height });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(original_width);
    limits.max_image_height = Some(original_height);
    limits.max_alloc = Some(max_pixels.saturating_mul(4).saturating_add(16 << 20));
    reader.limits(limits);
    let image = reader.decode().map_err(undecodable)?;

    let thumbnail = match method {
        Method::Scale if original_width <= width && original_height <= height => image,
        Method::Scale => image.resize(width, height, FilterType::Triangle),
        Method::Crop if original_width >= width && original_height >= height => {
            image.resize_to_fill(width, height, FilterType::Triangle)
        }
        Method::Crop => crop_to_aspect(&image, width, height),
    };
    encode(thumbnail, format)
}

/// The largest centred region with the requested aspect ratio, at the original resolution (a
/// small image is cropped, not enlarged).
fn crop_to_aspect(image: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    let (w, h) = (u64::from(image.width()), u64::from(image.height()));
    let (crop_w, crop_h) = if w * u64::from(height) > h * u64::from(width) {
        (h * u64::from(width) / u64::from(height), h)
    } else {
        (w, w * u64::from(height) / u64::from(width))
    };
    let (crop_w, crop_h) = (crop_w.max(1) as u32, crop_h.max(1) as u32);
    image.crop_imm((image.width() - crop_w) / 2, (image.height() - crop_h) / 2, crop_w, crop_h)
}

/// JPEG stays JPEG (photos); everything else becomes PNG (keeps transparency).
fn encode(image: DynamicImage, source: ImageFormat) -> Result<Thumbnail, ThumbnailError> {
    let (width, height) = (image.width(), image.height());
    let mut bytes = Vec::new();
    let content_type = if source == ImageFormat::Jpeg {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85);
        image.to_rgb8().write_with_encoder(encoder).map_err(|e| ThumbnailError::Undecodable(e.to_string()))?;
        "image/jpeg"
    } else {
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(|e| ThumbnailError::Undecodable(e.to_string()))?;
        "image/png"
    };
    Ok(Thumbnail { bytes, content_type, width, height })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_nearest_size_that_is_big_enough() {
        assert_eq!(choose(32, 32, Method::Crop), (32, 32, Method::Crop));
        assert_eq!(choose(50, 40, Method::Crop), (96, 96, Method::Crop));
        assert_eq!(choose(300, 200, Method::Scale), (320, 240, Method::Scale));
        assert_eq!(choose(500, 500, Method::Crop), (800, 600, Method::Scale));
        assert_eq!(choose(4000, 4000, Method::Scale), (800, 600, Method::Scale));
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::new_rgba8(width, height);
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
        bytes
    }

    #[test]
    fn crops_scales_and_never_enlarges() {
        let big = png(1000, 500);
        let crop = make(&big, "image/png", (96, 96, Method::Crop), 1 << 24).unwrap();
        assert_eq!((crop.width, crop.height, crop.content_type), (96, 96, "image/png"));
        let scale = make(&big, "image/png", (320, 240, Method::Scale), 1 << 24).unwrap();
        assert_eq!((scale.width, scale.height), (320, 160));
        let small = png(20, 10);
        let scale = make(&small, "image/png", (320, 240, Method::Scale), 1 << 24).unwrap();
        assert_eq!((scale.width, scale.height), (20, 10));
        let crop = make(&small, "image/png", (32, 32, Method::Crop), 1 << 24).unwrap();
        assert_eq!((crop.width, crop.height), (10, 10));
    }

    #[test]
    fn refuses_huge_images_from_the_header_and_garbage() {
        let big = png(300, 300);
        assert_eq!(
            make(&big, "image/png", (32, 32, Method::Crop), 10_000).err(),
            Some(ThumbnailError::TooLarge { width: 300, height: 300 })
        );
        assert!(matches!(
            make(b"not an image", "image/png", (32, 32, Method::Crop), 1 << 24),
            Err(ThumbnailError::Undecodable(_))
        ));
        assert_eq!(make(&big, "text/plain", (32, 32, Method::Crop), 1 << 24).err(), Some(ThumbnailError::Unsupported));
    }
}

/**
 * Image encoding: the one import site of `sharp`. Takes 8-bit interleaved pixels, returns PNG / WebP / JPEG bytes.
 */
import type sharpModule from 'sharp';

export const IMAGE_FORMATS = ['png', 'webp', 'jpg'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

export const IMAGE_MIME: Record<ImageFormat, string> = {
  png: 'image/png',
  webp: 'image/webp',
  jpg: 'image/jpeg',
};

export interface EncodeOptions {
  /** 1..100 for lossy formats */
  readonly quality?: number;
  /** lossless WebP */
  readonly lossless?: boolean;
}

let loading: Promise<typeof sharpModule> | undefined;

/**
 * sharp (and libvips) load with the first image: threads that never encode one, such as a materialisation's
 * (TIFF tiles only), start ~40 ms sooner each. One libvips thread per call and no libvips cache: the pools run the
 * calls side by side and keep their own caches.
 */
function sharpLoaded(): Promise<typeof sharpModule> {
  loading ??= import('sharp').then(({ default: sharp }) => {
    sharp.concurrency(1);
    sharp.cache(false);
    return sharp;
  });
  return loading;
}

/**
 * Encode interleaved 8-bit samples (`channels` per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
 * JPEG drops alpha.
 */
export async function encodeImage(
  data: Uint8Array,
  width: number,
  height: number,
  channels: 1 | 2 | 3 | 4,
  format: ImageFormat,
  options: EncodeOptions = {},
): Promise<Uint8Array> {
  const sharp = await sharpLoaded();
  let img = sharp(data, { raw: { width, height, channels } });
  // keep one-channel input one-channel (sharp would otherwise write gray as RGB)
  if (channels === 1 || channels === 2) img = img.toColourspace('b-w');
  switch (format) {
    case 'png':
      img = img.png({ compressionLevel: 3, adaptiveFiltering: false });
      break;
    case 'webp':
      img = img.webp({ quality: options.quality ?? 85, lossless: options.lossless ?? false, effort: 2 });
      break;
    case 'jpg':
      if (channels === 2 || channels === 4) img = img.removeAlpha();
      img = img.jpeg({ quality: options.quality ?? 85 });
      break;
  }
  const buf = await img.toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Decode a JPEG or WebP image (a TIFF tile payload) to interleaved 8-bit samples. */
export async function decodeImage(
  bytes: Uint8Array,
): Promise<{ data: Uint8Array; width: number; height: number; channels: number }> {
  const sharp = await sharpLoaded();
  const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
    channels: info.channels,
  };
}

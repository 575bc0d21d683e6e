"""Audio as a log-spectrogram image (paper Sec. 4, following the official AdaMML data layer).

A 1.28 s window (30,720 samples at 24 kHz) centred on the segment; STFT with n_fft 511, a 240-sample (10 ms)
periodic Hann window, hop 120 (5 ms), centred frames with zero (constant) padding; 256 frequency bins x the
first 256 frames, stored as log(|S|^2 + 1e-6). A video without audio gives silence: log(1e-6) everywhere.
"""

from __future__ import annotations

import numpy as np

AUDIO_RATE = 24_000
WINDOW_SAMPLES = 30_720  # 1.28 s at 24 kHz
N_FFT = 511
WIN_LENGTH = 240
HOP = 120
BINS = N_FFT // 2 + 1  # 256
FRAMES = 256
EPS = 1e-6


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (scipy's get_window('hann', length, fftbins=True))."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float64)


def stft_window(n_fft: int = N_FFT, win_length: int = WIN_LENGTH) -> np.ndarray:
    """The Hann window zero-padded to n_fft, centred (as librosa and torch.stft do)."""
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = hann_window(win_length)
    return window


def log_spectrogram(samples: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """(BINS, frames) float32 log power spectrogram of `samples` ((N,) float in [-1, 1])."""
    x = np.asarray(samples, dtype=np.float64)
    pad = N_FFT // 2
    x = np.pad(x, (pad, pad), mode="constant")
    count = 1 + (x.size - N_FFT) // HOP
    strides = (x.strides[0] * HOP, x.strides[0])
    framed = np.lib.stride_tricks.as_strided(x, shape=(count, N_FFT), strides=strides)  # (count, n_fft)
    spectrum = np.fft.rfft(framed * stft_window(), n=N_FFT, axis=1)  # (count, BINS)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    out = np.log(power + EPS).T  # (BINS, count)
    if out.shape[1] < frames:
        out = np.pad(out, ((0, 0), (0, frames - out.shape[1])), constant_values=np.log(EPS))
    return out[:, :frames].astype(np.float32)


def window_start(centre: float, rate: int, length: int, total: int) -> int:
    """First sample of the `length`-sample window centred at `centre` seconds, shifted inside a clip of `total`
    samples (at least `length`) at its ends."""
    start = int(round(centre * rate)) - length // 2
    return min(max(start, 0), total - length)


def repeat_to(samples: np.ndarray, length: int) -> np.ndarray:
    """A clip shorter than the window repeated to fill it (as the official code does); no samples give silence."""
    if samples.size == 0:
        return np.zeros(length, dtype=np.float32)
    return np.tile(samples, -(-length // samples.size))[:length].astype(np.float32)


def audio_window(samples: np.ndarray, centre: float, rate: int = AUDIO_RATE,
                 length: int = WINDOW_SAMPLES) -> np.ndarray:
    """`length` samples centred at `centre` seconds (`window_start`); a shorter clip is repeated (`repeat_to`)."""
    samples = np.asarray(samples)
    if samples.size < length:
        return repeat_to(samples, length)
    start = window_start(centre, rate, length, samples.size)
    return samples[start:start + length].astype(np.float32)


def silence(frames: int = FRAMES) -> np.ndarray:
    """The spectrogram of a video without audio."""
    return np.full((BINS, frames), np.log(EPS), dtype=np.float32)

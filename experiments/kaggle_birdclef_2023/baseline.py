"""Kaggle birdclef_2023: baseline training code (PyTorch).

A BirdCLEF-style pipeline: 5-second audio clips -> log-mel spectrogram computed on
the CPU inside the Dataset -> a small CNN -> cross-entropy over bird species.

This file is plain training code. It runs on its own (`python baseline.py`) and is
what `harness run baseline` runs. `optimization.py` imports everything from here
unchanged and only swaps the input pipeline, so keep the names it uses
(`make_dataloader`, `main`) when you replace the body with your own code.

Data: with `data/train_metadata.csv` and `data/train_audio/` (the Kaggle layout) it
trains on the real recordings; otherwise it generates a synthetic data set of bird
calls, the same for the same `data_seed`, so that the pipeline can be measured
before the data is downloaded.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from harness.monitor import ExperimentMonitor

HERE = Path(__file__).resolve().parent

# Defaults; experiment_config.json overrides them (top-level epochs, batch_size,
# seeds[0], data_dir, and everything under "parameters").
CONFIG: dict[str, Any] = {
    "competition": "birdclef_2023",
    "seed": 0,
    "epochs": 2,
    "batch_size": 32,
    "data_dir": "data",
    "data_seed": 2023,  # the synthetic data set depends on this, not on the run's seed
    "num_clips": 3072,
    "val_fraction": 0.1,
    "num_classes": 12,
    "clip_seconds": 5.0,
    "sample_rate": 32000,
    "n_fft": 1024,
    "hop_length": 320,
    "n_mels": 64,
    "fmin": 50.0,
    "fmax": 14000.0,
    "num_workers": 0,
    "learning_rate": 1e-3,
}


def load_config(path: Path | None = None) -> dict[str, Any]:
    """CONFIG overlaid with experiment_config.json and the HARNESS_* environment."""
    config = dict(CONFIG)
    path = path or Path(os.environ.get("HARNESS_CONFIG") or HERE / "experiment_config.json")
    base = HERE
    if path.is_file():
        base = path.parent
        settings = json.loads(path.read_text(encoding="utf-8"))
        for key in ("competition", "epochs", "batch_size", "data_dir"):
            if key in settings:
                config[key] = settings[key]
        if settings.get("seeds"):
            config["seed"] = settings["seeds"][0]
        config.update(settings.get("parameters") or {})
    if os.environ.get("HARNESS_SEED"):
        config["seed"] = int(os.environ["HARNESS_SEED"])
    data_dir = Path(os.environ.get("HARNESS_DATA_DIR") or config["data_dir"])
    config["data_dir"] = str(data_dir if data_dir.is_absolute() else base / data_dir)
    return config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- data
class Clip(NamedTuple):
    """One training example: a file to decode, or (path None) a synthetic call to generate."""

    path: str | None
    label: int
    seed: int


def find_clips(config: dict[str, Any]) -> tuple[list[Clip], list[str]]:
    """The clips and class names: the Kaggle data when data/ has it, else a synthetic set."""
    data_dir = Path(config["data_dir"])
    metadata = data_dir / "train_metadata.csv"
    if metadata.is_file() and (data_dir / "train_audio").is_dir():
        with metadata.open(newline="", encoding="utf-8") as f:
            rows = [row for row in csv.DictReader(f)]
        classes = sorted({row["primary_label"] for row in rows})
        index = {name: i for i, name in enumerate(classes)}
        clips = [Clip(str(data_dir / "train_audio" / row["filename"]), index[row["primary_label"]], i)
                 for i, row in enumerate(rows)]
        limit = int(config.get("max_clips") or 0)
        return (clips[:limit] if limit else clips), classes
    num_classes = int(config["num_classes"])
    rng = np.random.default_rng(int(config["data_seed"]))
    labels = rng.permutation(np.arange(int(config["num_clips"])) % num_classes)
    clip_seeds = rng.integers(0, 2**31 - 1, size=len(labels))
    clips = [Clip(None, int(label), int(s)) for label, s in zip(labels, clip_seeds)]
    return clips, [f"synthetic_bird_{i:02d}" for i in range(num_classes)]


def split_clips(clips: list[Clip], val_fraction: float) -> tuple[list[Clip], list[Clip]]:
    """A fixed train/validation split: every k-th clip is held out."""
    if val_fraction <= 0:
        return clips, []
    step = max(2, round(1 / val_fraction))
    return [c for i, c in enumerate(clips) if i % step], [c for i, c in enumerate(clips) if not i % step]


def synthesize_call(label: int, seed: int, config: dict[str, Any]) -> np.ndarray:
    """A bird-call-like clip: species-specific chirp syllables over noise and a distractor.

    Each species has its own pitch, sweep and rhythm; every clip draws its own
    onsets, loudness and background from ``seed``, so the same seed gives the same wave.
    """
    sr = int(config["sample_rate"])
    n = int(sr * float(config["clip_seconds"]))
    rng = np.random.default_rng(seed)
    species = np.random.default_rng(1000 + label)  # the species' voice, the same in every clip
    f0 = species.uniform(1500.0, 7000.0)
    sweep = species.uniform(-3000.0, 3000.0)
    syllable = species.uniform(0.05, 0.2)
    gap = species.uniform(0.03, 0.15)
    harmonics = int(species.integers(1, 4))

    # Background: wind-like low noise plus broadband hiss.
    wave = np.cumsum(rng.standard_normal(n)).astype(np.float32)
    wave -= np.linspace(wave[0], wave[-1], n, dtype=np.float32)
    wave *= 0.02 / (np.abs(wave).max() + 1e-6)
    wave += 0.01 * rng.standard_normal(n).astype(np.float32)

    def add_song(f_base: float, f_sweep: float, amplitude: float) -> None:
        length = int(syllable * sr)
        t = np.arange(length, dtype=np.float32) / sr
        freq = f_base + f_sweep * t / syllable + 150.0 * np.sin(2 * np.pi * 25.0 * t)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        envelope = np.hanning(length).astype(np.float32)
        call = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1)) * envelope
        start = int(rng.uniform(0, 0.3) * sr)
        while start + length < n:
            wave[start:start + length] += amplitude * rng.uniform(0.6, 1.0) * call.astype(np.float32)
            start += length + int(gap * sr * rng.uniform(0.8, 1.6))
            if rng.random() < 0.15:  # the bird pauses
                start += int(rng.uniform(0.2, 0.8) * sr)

    add_song(f0, sweep, float(rng.uniform(0.2, 0.6)))
    # Another species far away: the "secondary label" every real recording has.
    add_song(rng.uniform(1500.0, 7000.0), rng.uniform(-3000.0, 3000.0), float(rng.uniform(0.02, 0.1)))
    return wave


def read_audio(path: str, config: dict[str, Any]) -> np.ndarray:
    """The first clip_seconds of a recording, mono, at sample_rate (padded with zeros)."""
    try:
        import soundfile  # not in the framework image: add it to requirements.txt for real data
    except ImportError as e:
        raise RuntimeError("reading the Kaggle .ogg files needs soundfile: add `soundfile` to "
                         "requirements.txt (and `librosa` to resample)") from e
    sr = int(config["sample_rate"])
    n = int(sr * float(config["clip_seconds"]))
    wave, file_sr = soundfile.read(path, dtype="float32", frames=n * 4, always_2d=True)
    wave = wave.mean(axis=1)
    if file_sr != sr:
        import librosa

        wave = librosa.resample(wave, orig_sr=file_sr, target_sr=sr)
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(wave))] = wave[:n]
    return out


@lru_cache(maxsize=4)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters, shape (n_fft // 2 + 1, n_mels) (Slaney-style, as librosa's)."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2))
    lower, center, upper = mel_points[:-2, None], mel_points[1:-1, None], mel_points[2:, None]
    rising = (fft_freqs[None, :] - lower) / (center - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    return weights.T.astype(np.float32)


def log_mel_spectrogram(wave: np.ndarray, config: dict[str, Any]) -> torch.Tensor:
    """Log-mel spectrogram, shape (n_mels, frames), standardised per clip (librosa's recipe, in numpy)."""
    n_fft, hop = int(config["n_fft"]), int(config["hop_length"])
    padded = np.pad(wave, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
    filters = mel_filterbank(int(config["sample_rate"]), n_fft, int(config["n_mels"]),
                             float(config["fmin"]), float(config["fmax"]))
    mel = torch.log(torch.from_numpy(spectrum.astype(np.float32)) @ torch.from_numpy(filters) + 1e-6).T
    return (mel - mel.mean()) / (mel.std() + 1e-6)


class BirdCLEFDataset(Dataset):
    """Clips -> (log-mel tensor [1, n_mels, frames], label); all the work happens per item, on the CPU."""

    def __init__(self, clips: list[Clip], config: dict[str, Any]) -> None:
        self.clips = clips
        self.config = config

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip = self.clips[index]
        if clip.path is None:
            wave = synthesize_call(clip.label, clip.seed, self.config)
        else:
            wave = read_audio(clip.path, self.config)
        return log_mel_spectrogram(wave, self.config).unsqueeze(0), clip.label


def make_dataloader(dataset: Dataset, config: dict[str, Any], *, shuffle: bool,
                    generator: torch.Generator | None = None) -> DataLoader:
    """The input pipeline: what optimization.py replaces."""
    return DataLoader(dataset, batch_size=int(config["batch_size"]), shuffle=shuffle,
                      num_workers=int(config["num_workers"]), generator=generator)


# ---------------------------------------------------------------------------- model
class BirdCLEFModel(nn.Module):
    """A small CNN over the log-mel image: four conv blocks, global pooling, a linear head.

    The first convolution has stride 2: the spectrogram is large and the model small,
    as in the first epochs of many audio notebooks.
    """

    def __init__(self, config: dict[str, Any], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for i, width in enumerate((16, 32, 64, 128)):
            layers += [nn.Conv2d(channels, width, 3, stride=2 if i == 0 else 1, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------------------- train
def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    criterion: nn.Module, epoch: int, monitor: ExperimentMonitor,
                    device: torch.device) -> tuple[float, float]:
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    # monitor.batches times each step and the wait for its data (the input pipeline's cost).
    for batch_idx, (inputs, targets) in enumerate(monitor.batches(loader, epoch=epoch)):
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()

        hits = (outputs.argmax(1) == targets).sum().item()
        monitor.log_loss(epoch, batch_idx, loss.item())
        monitor.log_accuracy(epoch, batch_idx, hits / len(targets))
        total_loss += loss.item() * len(targets)
        correct += hits
        seen += len(targets)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    correct, seen = 0, 0
    for inputs, targets in loader:
        outputs = model(inputs.to(device))
        correct += (outputs.argmax(1).cpu() == targets).sum().item()
        seen += len(targets)
    return correct / max(seen, 1)


def results_dir() -> Path:
    return Path(os.environ.get("HARNESS_RESULTS_DIR") or HERE / "results")


def main(mode: str = "baseline") -> dict[str, float]:
    """Train and validate; every mode runs exactly this, only make_dataloader may differ."""
    config = load_config()
    seed_everything(int(config["seed"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    clips, classes = find_clips(config)
    train_clips, val_clips = split_clips(clips, float(config["val_fraction"]))
    generator = torch.Generator().manual_seed(int(config["seed"]))  # the shuffle order, in every mode
    train_loader = make_dataloader(BirdCLEFDataset(train_clips, config), config, shuffle=True,
                                   generator=generator)
    val_loader = make_dataloader(BirdCLEFDataset(val_clips, config), config, shuffle=False)

    model = BirdCLEFModel(config, num_classes=len(classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config["learning_rate"]))
    criterion = nn.CrossEntropyLoss()

    monitor = ExperimentMonitor(config["competition"], save_dir=str(results_dir()))
    monitor.start_mode(mode, config=config)
    print(f"{mode}: {len(train_clips)} train / {len(val_clips)} validation clips, {len(classes)} classes, "
          f"{'synthetic' if train_clips[0].path is None else 'Kaggle'} data, device {device}", flush=True)
    summary: dict[str, float] = {}
    try:
        for epoch in range(int(config["epochs"])):
            start = time.perf_counter()
            loss, acc = train_one_epoch(model, train_loader, optimizer, criterion, epoch, monitor, device)
            val_acc = evaluate(model, val_loader, device) if val_clips else math.nan
            summary = {"loss": loss, "accuracy": acc, "val_accuracy": val_acc}
            print(f"epoch {epoch + 1}/{config['epochs']}: loss {loss:.4f}  acc {acc:.3f}  "
                  f"val acc {val_acc:.3f}  ({time.perf_counter() - start:.1f} s)", flush=True)
    finally:
        monitor.stop_mode()
        monitor.save_json()
    return summary


if __name__ == "__main__":
    main(os.environ.get("HARNESS_MODE") or "baseline")

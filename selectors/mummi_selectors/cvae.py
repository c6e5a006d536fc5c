"""Outliers in the latent space of a convolutional variational autoencoder, after DeepDriveMD.

DeepDriveMD's adaptive MD embeds each frame's contact map with a CVAE trained on
the maps sampled so far, and restarts simulations from the frames with the
largest local outlier factor in latent space: conformations unlike what was
sampled around them. Here the selector scores streamed maps the same way and
retrains as new maps arrive: every ``retrain_every`` frames it writes its maps
to ``<campaign>/selectors/<name>/train-NNNN.npz`` and describes the training as a
task running :func:`train`, which the coordinator runs on its backend like any
task, with the cores it asks for (on the CPU: seconds for a few hundred 16x16
maps); the model that task writes is then hot-swapped by
:meth:`CvaeOutlierSelector.load_model`. Before the first model,
candidates are chosen at random (seeded).

The training files are kept: each is the record of what a model was trained on
(at most ``pool_size`` plus the promoted maps each).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from mummi_like import (
    Resources,
    Selector,
    SelectorConfig,
    SelectorContext,
    TrainingTask,
    atomic_write,
    name_frames,
    seeded_uniform,
)
from mummi_selectors.neighbours import local_outlier_factor

TRAIN_FUNCTION = "mummi_selectors.cvae:train"


class CvaeConfig(SelectorConfig):
    """Settings of the ``cvae-outliers`` selector."""

    retrain_every: int = Field(
        200, ge=1, description="New frames after which a (re)training is due; the first model needs as many."
    )
    latent_dim: int = Field(
        10, ge=1, le=64, description="Dimensions of the latent space; DeepDriveMD uses about 10 for contact maps."
    )
    filters: int = Field(16, ge=1, description="Channels of the first convolution; the second has twice as many.")
    hidden: int = Field(64, ge=1, description="Units of the dense layer between convolutions and latent space.")
    epochs: int = Field(10, ge=1, description="Passes over the training maps per training.")
    batch_size: int = Field(32, ge=1, description="Maps per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size.")
    kl_weight: float = Field(
        1.0, ge=0, description="Weight of the KL term against the reconstruction loss (beta of a beta-VAE)."
    )
    lof_neighbors: int = Field(
        20, ge=1, description="Neighbourhood size of the local outlier factor (DeepDriveMD's and scikit-learn's default)."
    )
    train_cores: int = Field(1, ge=1, description="Cores the training task reserves; torch uses as many threads.")
    train_walltime: float | None = Field(
        None, gt=0, description="Seconds after which the backend stops a training task; none for no limit."
    )


def _training_resources(config: CvaeConfig) -> Resources:
    """What each training task reserves: ``train_cores`` (torch's threads) for at most ``train_walltime``."""
    return Resources(cores=config.train_cores, walltime=config.train_walltime)


class ContactMapCVAE(nn.Module):
    """A small convolutional VAE for (h, w) maps: two convolutions, a dense layer, and their mirror image.

    The decoder upsamples to the exact input size, so maps of any size work;
    its output are logits of each contact being present.
    """

    def __init__(self, shape: Sequence[int], latent_dim: int, filters: int, hidden: int) -> None:
        super().__init__()
        self.shape = tuple(shape)
        """The (h, w) of the maps the model takes."""
        height, width = shape
        reduced = (2 * filters, math.ceil(height / 2), math.ceil(width / 2))
        flat = math.prod(reduced)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, filters, 3, padding=1), nn.ReLU(),
            nn.Conv2d(filters, 2 * filters, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(),
        )  # fmt: skip
        self.mean = nn.Linear(hidden, latent_dim)
        self.log_variance = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, flat), nn.ReLU(), nn.Unflatten(1, reduced),
            nn.Upsample(size=(height, width)),
            nn.Conv2d(2 * filters, filters, 3, padding=1), nn.ReLU(),
            nn.Conv2d(filters, 1, 3, padding=1),
        )  # fmt: skip

    def encode(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the latent distribution of (n, 1, h, w) maps."""
        hidden = self.encoder(maps)
        return self.mean(hidden), self.log_variance(hidden)

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction logits of a latent sample, with the mean and log-variance it was drawn from."""
        mean, log_variance = self.encode(maps)
        sample = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        return self.decoder(sample), mean, log_variance


def train(
    data: str,
    output: str,
    *,
    seed: int,
    epochs: int,
    latent_dim: int,
    filters: int,
    hidden: int,
    batch_size: int,
    learning_rate: float,
    kl_weight: float,
) -> dict[str, Any]:
    """Train a :class:`ContactMapCVAE` on the maps in ``data`` and save it to ``output``.

    This is the function a selector's training task runs in a backend worker.
    It is deterministic under ``seed`` (initial weights, shuffling and latent
    samples come from it; deterministic algorithms only) without changing the
    random state or settings of the process that calls it, and uses as many
    threads as ``OMP_NUM_THREADS`` says (the backend sets it to the task's cores;
    1 when unset). The model is written atomically, so a training killed at
    its walltime never leaves a partial model behind.

    Parameters
    ----------
    data
        ``.npz`` with ``maps``, an (n, h, w) array of values in [0, 1].
    output
        Where to save the model (parent folders are made).
    seed, epochs, latent_dim, filters, hidden, batch_size, learning_rate, kl_weight
        As in :class:`CvaeConfig`.

    Returns
    -------
    dict
        ``loss`` (mean loss per map in the last epoch), ``losses`` (per
        epoch), ``frames`` and ``model`` (the path written).
    """
    with np.load(data) as archive:
        maps = torch.from_numpy(archive["maps"].astype(np.float32)).unsqueeze(1)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ContactMapCVAE(maps.shape[2:], latent_dim, filters, hidden)
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
            shuffle = torch.Generator().manual_seed(seed)
            losses = []
            for _ in range(epochs):
                total = 0.0
                for batch in torch.randperm(len(maps), generator=shuffle).split(batch_size):
                    target = maps[batch]
                    logits, mean, log_variance = model(target)
                    reconstruction = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
                    divergence = -0.5 * torch.sum(1 + log_variance - mean.pow(2) - log_variance.exp())
                    loss = (reconstruction + kl_weight * divergence) / len(batch)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(batch)
                losses.append(total / len(maps))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    hyper = {"latent_dim": latent_dim, "filters": filters, "hidden": hidden}
    with atomic_write(path, "wb") as handle:
        torch.save({"shape": list(maps.shape[2:]), "hyper": hyper, "state_dict": model.state_dict()}, handle)
    return {"loss": losses[-1], "losses": losses, "frames": len(maps), "model": str(path)}


def load(path: str) -> ContactMapCVAE:
    """The model :func:`train` saved at ``path``, on the CPU, in evaluation mode."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = ContactMapCVAE(saved["shape"], **saved["hyper"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


class CvaeOutlierSelector(Selector):
    """CVAE + LOF outliers (DeepDriveMD): promotes the contact maps most outlying in a learned latent space.

    Frames are (h, w) maps with values in [0, 1] (contact maps, binary or
    smooth). With a model, a waiting frame's score is its local outlier factor
    among the latent means of all frames held, promoted ones included, so that
    a frame near one already promoted does not look new; before the first model
    scores are random (seeded). A full pool evicts its least outlying frames.
    Latent vectors are cached per frame until the next model.
    """

    config_model = CvaeConfig
    config: CvaeConfig

    def __init__(self, config: CvaeConfig, context: SelectorContext) -> None:
        self.model_path: str | None = None
        """The model in use, as given to :meth:`load_model`; ``None`` before the first."""
        self._model: ContactMapCVAE | None = None
        self._latents: dict[str, np.ndarray] = {}
        self._seen_at_training = 0
        self._generation = 0
        super().__init__(config, context)

    def retrain_due(self) -> bool:
        """Whether ``retrain_every`` new frames arrived since the last training data was written."""
        return self.frames_seen - self._seen_at_training >= self.config.retrain_every

    @classmethod
    def resource_requests(cls, config: SelectorConfig) -> dict[tuple[str | int, ...], Resources]:
        """Each training task's reservation, which ``train_cores`` sizes (validate checks it against the backend)."""
        assert isinstance(config, CvaeConfig)
        return {("train_cores",): _training_resources(config)}

    def training_task(self, workdir: str) -> TrainingTask:
        """Write the maps held (waiting and promoted) as training data and describe their training.

        The model goes to ``<workdir>/model.pt``; a relative ``workdir`` is taken
        inside the campaign directory. Paths in the task are absolute, since the
        task runs in a directory of its own.
        """
        config = self.config
        held = self.pool.ids + self.pool.selected_ids
        if not held:
            raise ValueError(f"selector {self.context.name!r} holds no frames to train on; ingest some first")
        data_dir = self.context.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        data = data_dir / f"train-{self._generation:04d}.npz"
        with atomic_write(data, "wb") as file:
            np.savez(file, maps=self._maps(self._held_vectors()), ids=np.array(held))
        self._generation += 1
        self._seen_at_training = self.frames_seen
        self._save_state()
        model_path = (self.context.campaign_dir / workdir / "model.pt").resolve()
        kwargs = {
            "data": str(data.resolve()),
            "output": str(model_path),
            "seed": self.context.seed,
            "epochs": config.epochs,
            "latent_dim": config.latent_dim,
            "filters": config.filters,
            "hidden": config.hidden,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "kl_weight": config.kl_weight,
        }
        return TrainingTask(TRAIN_FUNCTION, kwargs, _training_resources(config), str(model_path))

    def load_model(self, path: str) -> None:
        """Swap in the model a training task wrote and rescore the pool with it.

        Raises
        ------
        ValueError
            When the model was trained on maps of another shape than this selector's.
        """
        self._use(path)
        self.pool.rescore(self._scores())
        self._save_state()

    def _use(self, path: str) -> None:
        model = load(path)
        if self.frame_shape is not None and model.shape != self.frame_shape:
            raise ValueError(
                f"selector {self.context.name!r}: model {path} was trained on {model.shape} maps, "
                f"not {self.frame_shape}"
            )
        self._model, self.model_path = model, path
        self._latents.clear()

    def _check_frames(self, ids: Sequence[str], frames: np.ndarray) -> None:
        if frames.ndim != 3:
            raise ValueError(
                f"selector {self.context.name!r} scores (h, w) maps, one per frame; got features of shape "
                f"{frames.shape[1:]} per frame"
            )
        outside = ((frames < 0) | (frames > 1)).reshape(len(frames), -1).any(axis=1)
        if outside.any():
            raise ValueError(
                f"selector {self.context.name!r}: maps of {name_frames(ids, outside)} have values outside [0, 1]; "
                "pass contact maps (binary or smooth), e.g. a thresholded or sigmoid-switched distance map"
            )

    def _held_vectors(self) -> np.ndarray:
        """Vectors of the waiting frames, then of the promoted ones; at least one frame must be held."""
        return np.concatenate([v for v in (self.pool.vectors, self.pool.selected_vectors) if len(v)])

    def _maps(self, vectors: np.ndarray) -> np.ndarray:
        return vectors.reshape(len(vectors), *self.frame_shape)

    def _scores(self) -> np.ndarray:
        pool = self.pool
        if self._model is None:
            return seeded_uniform(self.context.seed, pool.ids)
        held = pool.ids + pool.selected_ids
        if not held:
            return np.empty(0)
        missing = [i for i, frame_id in enumerate(held) if frame_id not in self._latents]
        if missing:
            maps = torch.from_numpy(self._maps(self._held_vectors()[missing])).unsqueeze(1)
            with torch.no_grad():
                means = self._model.encode(maps)[0].double().numpy()
            self._latents.update(zip((held[i] for i in missing), means))
        # Drop the latents of evicted frames, so the cache stays as bounded as the pool.
        self._latents = {frame_id: self._latents[frame_id] for frame_id in held}
        factors = local_outlier_factor(np.stack([self._latents[i] for i in held]), self.config.lof_neighbors)
        return factors[: len(pool)]

    def _state(self) -> dict[str, Any]:
        return {
            **super()._state(),
            "model_path": self.model_path,
            "seen_at_training": self._seen_at_training,
            "generation": self._generation,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        self._seen_at_training = state["seen_at_training"]
        self._generation = state["generation"]
        if state["model_path"] is not None:
            self._use(state["model_path"])

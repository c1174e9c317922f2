"""History of generated images for the discriminator updates (Shrivastava et al., 2017).

The discriminator is trained on a mix of the newest fakes and fakes from earlier generator
states, which damps oscillation in GAN training. CycleGAN keeps 50 images.
"""

from __future__ import annotations

import torch


class ImagePool:
    """A bounded buffer of previously generated images.

    ``query(images)``: while the pool holds fewer than ``size`` images, every image is stored
    and returned unchanged. Once full, each image is, with probability 1/2, returned unchanged;
    otherwise a uniformly chosen stored image is returned in its place and the new image takes
    its slot. ``size = 0`` disables the pool (queries return their input).

    Args:
        size: capacity (CycleGAN: 50).
        generator: torch RNG for the coin flips and slot choices (its state is checkpointed by
            the caller, so a resumed run draws the same numbers).
    """

    def __init__(self, size: int = 50, generator: torch.Generator | None = None):
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.generator = generator
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Images for the discriminator: the batch, partly swapped with history.

        Args:
            images: (N, C, H, W) generated images (detached here).

        Returns:
            (N, C, H, W) tensor on the device of ``images``.
        """
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for img in images:
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(torch.rand((), generator=self.generator)) < 0.5:
                k = int(torch.randint(0, self.size, (), generator=self.generator))
                old = self.images[k]
                self.images[k] = img.clone()
                out.append(old.to(img.device))
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> dict:
        """Contents for a checkpoint (CPU tensors)."""
        stacked = torch.stack([i.cpu() for i in self.images]) if self.images else torch.empty(0)
        return {"size": self.size, "images": stacked}

    def load_state_dict(self, state: dict, device: str | torch.device = "cpu") -> None:
        """Restore from :meth:`state_dict`."""
        self.size = int(state["size"])
        imgs = state["images"]
        self.images = [i.to(device) for i in imgs] if imgs.numel() else []

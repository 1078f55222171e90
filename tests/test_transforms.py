"""Per-batch augmentation on the device against torchvision's per-image reference."""
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from lrnets.data.transforms import CifarTransform, UnitRange, per_image_standardization, random_crop_flip

N = 4000
CHI2_80DOF_999 = 124.8  # 99.9% quantile of chi-square with 80 degrees of freedom


def _marked_image() -> torch.Tensor:
    """A 3x32x32 image whose pixels are all distinct, so a crop reveals its offset and flip."""
    return torch.arange(1, 3 * 32 * 32 + 1, dtype=torch.float32).view(3, 32, 32)


def _candidates(image: torch.Tensor) -> torch.Tensor:
    """torchvision's result for each of the 9 x 9 offsets, unflipped then flipped: (162, 3, 32, 32)."""
    padded = TF.pad(image, [4])
    crops = [TF.crop(padded, top, left, 32, 32) for top in range(9) for left in range(9)]
    return torch.stack(crops + [TF.hflip(c) for c in crops])


def _identify(outputs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Index of the candidate each output equals exactly (fails if any output matches none).
    Central pixels (never padding, all distinct) pick the candidate; then whole images are compared."""
    def key(images):
        return images[:, 0, 14:18, 14:18].flatten(1)

    equal = (key(outputs)[:, None, :] == key(candidates)[None]).all(-1)
    assert torch.all(equal.sum(1) == 1), "an augmented image is not a torchvision crop/flip"
    index = equal.float().argmax(1)
    assert torch.equal(outputs, candidates[index])
    return index


def _check_uniform(index: torch.Tensor) -> None:
    offsets = torch.bincount(index % 81, minlength=81).float()
    expected = len(index) / 81
    assert ((offsets - expected) ** 2 / expected).sum() < CHI2_80DOF_999
    flip_rate = (index >= 81).float().mean().item()
    assert abs(flip_rate - 0.5) < 0.03  # 4 standard errors at N = 4000


def test_device_crop_flip_gives_torchvision_crops_with_uniform_offsets():
    torch.manual_seed(0)
    image = _marked_image()
    outputs = random_crop_flip(image.expand(N, -1, -1, -1), padding=4)
    _check_uniform(_identify(outputs, _candidates(image)))


def test_torchvision_reference_has_the_same_distribution():
    """The same checks pass for torchvision's per-image pipeline: both are uniform over the 81
    offsets and flip half of the images."""
    torch.manual_seed(0)
    image = _marked_image()
    reference = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    outputs = torch.stack([reference(image) for _ in range(N)])
    _check_uniform(_identify(outputs, _candidates(image)))


def test_per_image_standardization_matches_the_tensorflow_formula():
    torch.manual_seed(0)
    x = torch.rand(5, 3, 32, 32)
    x[0] = 0.25  # constant image: std floored at 1/sqrt(3072), output zero
    flat = x.flatten(1).double()
    mean = flat.mean(1, keepdim=True)
    std = flat.var(1, unbiased=False, keepdim=True).sqrt().clamp_min(1 / 3072 ** 0.5)
    expected = ((flat - mean) / std).view_as(x).float()
    out = per_image_standardization(x)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.all(out[0] == 0)
    assert torch.allclose(out[1:].flatten(1).mean(1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(out[1:].flatten(1).std(1, unbiased=False), torch.ones(4), atol=1e-4)


@pytest.mark.parametrize("train", [False, True])
def test_cifar_transform_standardises_and_augments_only_in_training(train):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = CifarTransform()(x, train=train)
    plain = per_image_standardization(x.float() / 255)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, plain) != train


def test_unit_range():
    x = torch.tensor([[[[0, 255, 51]]]], dtype=torch.uint8)
    assert torch.equal(UnitRange()(x, train=True), torch.tensor([[[[0.0, 1.0, 0.2]]]]))

"""Tasks and the built-in task plugins, on tiny fake data in the real on-disk formats."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from deapnos.evaluate.data import TensorBatches, random_crop_reflect, random_cutout, random_hflip
from deapnos.evaluate.protocol import ProtocolConfig, evaluate_genome
from deapnos.evaluate.tasks import Task, TaskDataError

import fake_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

FEW = ProtocolConfig(lr=1e-3, epochs=2)
TINY_TIMM = {"model_kwargs": {"channel_multiplier": 0.25, "depth_multiplier": 0.1}, "num_workers": 0}


def _tasks():
    from deapnos_plugins.cifar10 import cifar10_tasks
    from deapnos_plugins.digits import digits_task
    from deapnos_plugins.ptb import ptb_task
    from deapnos_plugins.vision_tasks import vision_tasks
    return {t.name: t for t in [digits_task(), *cifar10_tasks(), *vision_tasks(), ptb_task()]}


# -- Task ---------------------------------------------------------------------------------------

def test_builtin_tasks_pickle_and_validate():
    for name, task in _tasks().items():
        back = pickle.loads(pickle.dumps(task))
        assert back.name == name and back.data_factory is task.data_factory
    digits = _tasks()["digits"]
    with pytest.raises(ValueError, match="metric"):
        digits.replace(metric="f1")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        digits.replace(steps_per_epoch=0)
    assert digits.replace(options={"base": 8}).options == {"base": 8}


def test_data_path_precedence(monkeypatch, tmp_path):
    t = _tasks()["cifar10-convnet"]
    monkeypatch.delenv("DEAPNOS_CIFAR10", raising=False)
    monkeypatch.delenv("DEAPNOS_DATA", raising=False)
    assert str(t.resolve_data_path()) == os.path.join("data", "cifar-10-batches-py")
    monkeypatch.setenv("DEAPNOS_DATA", str(tmp_path / "root"))
    assert t.resolve_data_path() == tmp_path / "root" / "cifar-10-batches-py"
    monkeypatch.setenv("DEAPNOS_CIFAR10", str(tmp_path / "env"))
    assert t.resolve_data_path() == tmp_path / "env"
    assert t.replace(data_path=str(tmp_path / "explicit")).resolve_data_path() == tmp_path / "explicit"


def test_missing_cifar10_gives_the_promised_message(tmp_path, monkeypatch):
    monkeypatch.delenv("DEAPNOS_CIFAR10", raising=False)
    t = _tasks()["cifar10-convnet"].replace(data_path=str(tmp_path / "nowhere"))
    with pytest.raises(TaskDataError) as err:
        t.check_available()
    msg = str(err.value)
    for words in ("cifar10-convnet", str(tmp_path / "nowhere"), "does not exist",
                  "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "data_batch_1", "DEAPNOS_CIFAR10"):
        assert words in msg, words
    r = evaluate_genome("adam", t, device="cpu")
    assert r.status == "error" and msg == r.message
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskDataError, match="lacks data_batch_1"):
        t.replace(data_path=str(tmp_path / "empty")).check_available()


# -- digits -------------------------------------------------------------------------------------

def test_digits_split_is_fixed():
    from deapnos_plugins.digits import N_TRAIN, digits_arrays
    x1, y1 = digits_arrays()
    x2, y2 = digits_arrays()
    assert x1.shape == (1797, 1, 8, 8) and N_TRAIN == 1497 and 0 <= x1.min() and x1.max() <= 1
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert set(y1[N_TRAIN:]) == set(range(10))


def test_digits_evaluation_is_deterministic():
    t = _tasks()["digits"]
    cfg = ProtocolConfig(epochs=4, step_scale=0.5, screen_lrs_b=())
    a = evaluate_genome("adam", t, seed=1, config=cfg, device="cpu")
    b = evaluate_genome("adam", t, seed=1, config=cfg, device="cpu")
    assert a.ok and a.fitness == b.fitness and a.curve == b.curve and a.screen == b.screen


# -- the ConvNet --------------------------------------------------------------------------------

def test_convnet_matches_the_spec():
    from deapnos_plugins.convnet import ConvNet
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert count(ConvNet(32)) == 94_986 and count(ConvNet(48)) == 211_594
    net = ConvNet(32)
    bn = net.features[1]
    assert bn.eps == 1e-3 and bn.momentum == 0.01
    assert float(net.features[0].bias.detach().abs().sum()) == 0.0
    # TF "same" padding: stride 2 pads bottom/right only
    x = torch.zeros(1, 3, 32, 32)
    h = net.features[:3](x)
    assert net.features[3](h).shape[-2:] == (16, 16)
    conv = net.features[3]
    probe = torch.zeros(1, 32, 4, 4)
    probe[0, :, 0, 0] = 1.0
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[:, :, 0, 0] = 1.0        # reads the top-left of each 3x3 window
    with torch.no_grad():
        out = conv(probe)
    assert out.shape[-2:] == (2, 2) and float(out[0, 0, 0, 0]) == 32.0   # no top/left padding


# -- augmentation -------------------------------------------------------------------------------

def test_batched_augmentations():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    assert torch.equal(random_crop_reflect(x, 0, g), x)
    crop = random_crop_reflect(x, 2, g)
    assert crop.shape == x.shape
    flipped = random_hflip(x, torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    for seed in range(20):
        cut = random_cutout(x, 4, torch.Generator().manual_seed(seed))
        zeros = (cut == 0)
        assert torch.equal(zeros[:, 0], zeros[:, 1])               # same patch on every channel
        for i in range(2):
            rows = zeros[i, 0].any(1).nonzero().flatten()
            cols = zeros[i, 0].any(0).nonzero().flatten()
            assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4  # clipped at the borders
            assert int(zeros[i, 0].sum()) == len(rows) * len(cols)
    with pytest.raises(ValueError):
        random_cutout(x, 3, g)


def test_tensor_batches_keep_short_last_batch():
    b = TensorBatches(torch.arange(10), torch.arange(10), 4, shuffle=False)
    assert [len(y) for _, y in b] == [4, 4, 2] and len(b) == 3
    b = TensorBatches(torch.arange(10), torch.arange(10), 4, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(0))
    batches = [y for _, y in b]
    assert len(batches) == 2 == len(b) and len(set(torch.cat(batches).tolist())) == 8


# -- CIFAR-10 surrogates on a fake folder -------------------------------------------------------

def test_cifar10_surrogates_train_on_a_fake_folder(tmp_path):
    batches = fake_data.write_cifar10(tmp_path)
    tasks = _tasks()
    for name, path in (("cifar10-convnet", tmp_path), ("cifar10-convnet48", batches)):
        t = tasks[name].replace(data_path=str(path), batch_size=16)
        assert t.check_available() == batches
        data = t.build_data("cpu", 0)
        assert data.info == {"n_train": 108, "n_val": 12}
        x, y = next(iter(data.train))
        assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        if name == "cifar10-convnet":
            assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        else:
            assert float(x.min()) < 0.0                     # normalised
        r = evaluate_genome("adam", t, config=ProtocolConfig(step_scale=0.01, lr=1e-3, evaluate_test=True),
                            device="cpu")
        assert r.status == "ok", r.message
        spe = {"cifar10-convnet": 2, "cifar10-convnet48": 4}[name]          # 200 or 400 steps x 0.01
        assert r.curve and r.steps == len(r.curve) * spe and r.test_accuracy is not None


def test_cifar_reader_validates(tmp_path):
    from deapnos_plugins.cifar10 import read_cifar_file
    bad = tmp_path / "data_batch_1"
    with open(bad, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(TaskDataError, match="labels"):
        read_cifar_file(bad)
    with open(bad, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(TaskDataError, match="3072"):
        read_cifar_file(bad)
    bad.write_bytes(b"not a pickle")
    with pytest.raises(TaskDataError, match="cannot read"):
        read_cifar_file(bad)


# -- fitness tasks (timm, PTB) on fake data -----------------------------------------------------

def test_cifar100_from_scratch_on_fake_data(tmp_path):
    fake_data.write_cifar100(tmp_path)
    t = _tasks()["cifar100-effnetv2s"].replace(data_path=str(tmp_path), batch_size=8, steps_per_epoch=2,
                                                 options=TINY_TIMM)
    assert t.protocol_overrides["threshold"] < 0.40
    r = evaluate_genome("adam", t, config=FEW, device="cpu")
    assert r.status == "ok", r.message
    assert r.steps == 4 and len(r.curve) == 2


def test_tinyimagenet_on_fake_data(tmp_path):
    fake_data.write_tinyimagenet(tmp_path)
    t = _tasks()["tinyimagenet-effnetv2s"].replace(data_path=str(tmp_path), batch_size=4, steps_per_epoch=2,
                                                     options={**TINY_TIMM, "image_size": 16})
    data = t.build_data("cpu", 0)
    assert data.num_classes == 3 and data.info == {"n_train": 12, "n_val": 6}
    r = evaluate_genome("torch:Adam", t, config=FEW, device="cpu")
    assert r.status == "ok", r.message


def test_finetune_loads_a_local_checkpoint(tmp_path):
    import timm
    src = timm.create_model("tf_efficientnetv2_s", pretrained=False, num_classes=1000, **TINY_TIMM["model_kwargs"])
    ckpt = tmp_path / "effnet.pth"
    torch.save(src.state_dict(), ckpt)
    fake_data.write_image_folder(tmp_path / "flowers", splits=("train", "val", "test"))
    t = _tasks()["flowers102-finetune"].replace(
        data_path=str(tmp_path / "flowers"), batch_size=4, steps_per_epoch=2,
        options={**TINY_TIMM, "image_size": 32, "checkpoint": str(ckpt)})
    torch.manual_seed(99)
    model = t.build_model(3)
    assert torch.equal(model.conv_stem.weight, src.conv_stem.weight)       # backbone from the checkpoint
    assert model.get_classifier().out_features == 3
    r = evaluate_genome("adam", t, config=ProtocolConfig(lr=1e-3, epochs=2, evaluate_test=True), device="cpu")
    assert r.status == "ok", r.message
    assert r.test_accuracy is not None


def test_finetune_missing_checkpoint_and_data(tmp_path, monkeypatch):
    monkeypatch.delenv("DEAPNOS_EFFNETV2_CHECKPOINT", raising=False)
    fake_data.write_image_folder(tmp_path / "cars")
    t = _tasks()["cars196-finetune"].replace(data_path=str(tmp_path / "cars"),
                                             options={"checkpoint": str(tmp_path / "nope.pth")})
    r = evaluate_genome("adam", t, device="cpu")
    assert r.status == "error" and str(tmp_path / "nope.pth") in r.message and "timm" in r.message
    t = t.replace(data_path=str(tmp_path / "missing"))
    with pytest.raises(TaskDataError, match="prepare cars196"):
        t.check_available()


def test_image_folder_rejects_unknown_val_class(tmp_path):
    from deapnos_plugins.vision_tasks import scan_image_folder
    fake_data.write_image_folder(tmp_path, classes=2)
    (tmp_path / "val" / "stranger").mkdir()
    train, classes = scan_image_folder(tmp_path / "train")
    assert classes == ["class_00", "class_01"] and len(train) == 6
    with pytest.raises(TaskDataError, match="stranger"):
        scan_image_folder(tmp_path / "val", classes)


def test_ptb_language_model_on_fake_text(tmp_path):
    from deapnos_plugins.ptb import build_vocab, read_words, sequences
    folder = fake_data.write_ptb(tmp_path / "ptb")
    words = read_words(folder / "ptb.train.txt")
    vocab = build_vocab(words)
    assert words[-1] == "<eos>" and "<unk>" in vocab
    x, y = sequences(torch.arange(10), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    t = _tasks()["ptb-lstm"].replace(data_path=str(folder), batch_size=4, steps_per_epoch=3, warmup_steps=6,
                                     options={"size": 16, "bptt": 8})
    # 3 screening steps of warm-up on random text barely move the loss: keep only the divergence rule
    r = evaluate_genome("adam", t, config=ProtocolConfig(epochs=3, screen_epochs=1, min_progress=0.0), device="cpu")
    assert r.status == "ok", r.message
    last = r.curve[-1]
    assert 0 < r.fitness <= 1 and last["val_score"] == pytest.approx(np.exp(-last["val_loss"]))
    assert r.fitness == max(c["val_score"] for c in r.curve) and len(r.screen) == 7


# -- discovery ----------------------------------------------------------------------------------

def test_builtin_task_plugins_are_discovered():
    from deapnos.plugins import all_tasks, fitness_tasks, get_plugin_manager, surrogates
    pm = get_plugin_manager()
    sur, fit = surrogates(pm), fitness_tasks(pm)
    assert {"digits", "cifar10-convnet", "cifar10-convnet48"} <= set(sur)
    assert {"cifar100-effnetv2s", "tinyimagenet-effnetv2s", "flowers102-finetune", "cars196-finetune",
            "caltech101-finetune", "ptb-lstm"} <= set(fit)
    tasks = all_tasks(pm)
    assert all(isinstance(t, Task) for t in tasks.values())
    assert tasks["digits"].plugin == "digits" and tasks["ptb-lstm"].plugin == "ptb"

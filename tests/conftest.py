"""Shared test set-up: an isolated user cache for the whole session (transfer matrices and
decoded datasets are built once per session, never written to the real user cache).

The one stand-in for a trained model is ``tests/fake_trained.py``
(``from fake_trained import FakeTrained``); :func:`contract_view` narrows a real or fake model
to the members of the trained-model contract."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    if "OPTICSFREE_TEST_CACHE" in os.environ:  # reuse between local runs if asked
        os.environ["OPTICSFREE_CACHE"] = os.environ["OPTICSFREE_TEST_CACHE"]
    else:
        os.environ["OPTICSFREE_CACHE"] = str(tmp_path_factory.mktemp("opticsfree-cache"))
    yield


@pytest.fixture
def one_thread():
    """torch on one thread for the test: tiny networks run fastest so (and do not stall on a busy
    machine). A module uses it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def contract_view():
    """``view(model)``: an object with the members of
    :class:`opticsfree.evaluation.contract.TrainedEmbedder` (delegated to ``model``) and nothing
    else, to show that a function needs no more of a trained model than the contract."""

    def view(model):
        class View:
            __slots__ = ()
            classes = property(lambda self: model.classes)
            size = property(lambda self: model.size)
            has_head = property(lambda self: model.has_head)
            epoch = property(lambda self: model.epoch)
            loss = property(lambda self: model.loss)
            captures = property(lambda self: model.captures)
            config = property(lambda self: model.config)
            model = property(lambda self: model.model)
            mirror = property(lambda self: model.mirror)

            def embed(self, images, domain, /, batch_size=512):
                return model.embed(images, domain, batch_size)

            def logits(self, images, /, batch_size=512):
                return model.logits(images, batch_size)

            def load_split(self, split, /):
                return model.load_split(split)

        return View()

    return view


@pytest.fixture
def interrupt_in_second_validation(monkeypatch):
    """``interrupt(cfg, run)``: train the embedding config ``cfg`` into ``run`` and interrupt it
    (KeyboardInterrupt) during epoch 2's validation, after epoch 1's state was written."""
    import opticsfree.training.trainer as trainer_mod
    from opticsfree.training import train

    def interrupt(cfg, run):
        real, calls = trainer_mod.validate, []

        def stop(*a, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(*a, **kw)

        monkeypatch.setattr(trainer_mod, "validate", stop)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, run, show_progress=False)
        monkeypatch.setattr(trainer_mod, "validate", real)

    return interrupt

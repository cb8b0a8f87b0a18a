"""Config keys and hook point names are checked when the config (or the recipe) is read."""

import pytest

import hf_specialist as hfs
from hf_specialist.cli import main


@pytest.mark.parametrize("make", [lambda: hfs.SpecialistConfig(d_in=4, d_laten=8),
                                  lambda: hfs.SpecialistConfig.from_dict({"d_in": 4, "d_laten": 8})])
def test_a_misspelled_key_is_an_error_naming_both(make):
    with pytest.raises(hfs.InputError, match=r"Unknown SpecialistConfig key\(s\): 'd_laten' \(did you mean "
                                             r"'d_latent'\?\)"):
        make()


def test_an_unrelated_unknown_key_on_load_still_warns_and_is_dropped():
    with pytest.warns(UserWarning, match="a_key_from_a_newer_version"):
        config = hfs.SpecialistConfig.from_dict({"d_in": 4, "a_key_from_a_newer_version": 1})
    assert config.d_in == 4


@pytest.mark.parametrize("spec, meant", [("layer.3", "layers.3"), ("layers3", "layers.3"), ("Layers.-1", "layers.-1"),
                                         ("embeds", "embed"), ("final-norm", "final_norm"), ("layers", "layers.N")])
def test_hook_point_near_misses_are_refused_when_the_config_is_made(spec, meant):
    with pytest.raises(hfs.InputError, match=rf"`hook_point` '{spec}' is not a hook point name: did you mean "
                                             rf"'{meant}'\? Valid forms: 'layers.N', 'layers.-N', 'embed'"):
        hfs.SpecialistConfig(d_in=4, hook_point=spec)


@pytest.mark.parametrize("spec", ["layers.3", "layers.-1", "embed", "final_norm", "transformer.h.3",
                                  "encoder.layer.3", "embeddings"])
def test_valid_hook_point_names_pass(spec):
    assert hfs.SpecialistConfig(d_in=4, hook_point=spec).hook_point == spec


def test_a_misspelled_recipe_key_is_an_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("discover:\n  segmnet_length: 2\n")
    assert main(["discover", "--recipe", str(recipe)]) == 2
    assert "recipe key(s) misspelled: 'segmnet_length' (did you mean 'segment_length'?)" in capsys.readouterr().err
    import numpy as np

    np.save(tmp_path / "s.npy", np.zeros((20, 4), dtype=np.float32))
    np.save(tmp_path / "g.npy", np.zeros((20, 1)))
    assert main(["train", "--states", str(tmp_path / "s.npy"), "--tasks", str(tmp_path / "g.npy"), "--hook-point",
                 "layer.3", "--output", str(tmp_path / "out")]) == 2
    assert "'layer.3' is not a hook point name: did you mean 'layers.3'?" in capsys.readouterr().err


def test_the_installed_version_is_the_one_stamped_into_configs():
    from importlib.metadata import version

    assert version("hf_specialist") == hfs.__version__ == hfs.SpecialistConfig(d_in=4).library_version


@pytest.mark.parametrize("call, match", [
    (lambda: hfs.synthetic.collider_sequences(n=10, T=5, M=1, segment_length=2), "`T`=5 must be a multiple"),
    (lambda: hfs.SpecialistAdapter(hfs.SpecialistConfig(d_in=4)).save_pretrained("/tmp/x", structure=object()),
     "`structure` must be a fitted TaskStructure"),
    (lambda: hfs.train_specialist(hfs.SpecialistAdapter(hfs.SpecialistConfig(d_in=4)), None, None),
     "Pass exactly one of `states`"),
])
def test_checks_at_every_door_raise_input_error(call, match):
    # the CLI exits with code 2 for an InputError only, so every check a user can trip raises one
    with pytest.raises(hfs.InputError, match=match):
        call()


def test_a_newer_versions_key_that_resembles_an_old_one_warns_and_loads():
    # DESIGN §5: a config written by a later release loads; its new keys are dropped with a warning
    with pytest.warns(UserWarning, match="Ignoring unknown SpecialistConfig keys \\['d_latents'\\]"):
        config = hfs.SpecialistConfig.from_dict({"d_in": 4, "d_latents": 8, "library_version": "99.0"})
    assert config.d_latent == hfs.SpecialistConfig(d_in=4).d_latent


def test_the_config_signature_lists_its_fields():
    import inspect

    parameters = inspect.signature(hfs.SpecialistConfig).parameters
    assert list(parameters)[:3] == ["d_in", "d_latent", "n_tasks"] and "step_tasks" in parameters

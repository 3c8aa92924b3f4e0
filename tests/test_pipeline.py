import json

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from ecgaug.models.modeling_utils import cpu_has_native_bf16
from ecgaug.pipeline import DiffuSETSPipeline
from ecgaug.signal import reorder_leads, resample

from conftest import HashTextEncoder, make_tiny_pipeline

REPORTS = ["sinus rhythm|normal ECG", "atrial fibrillation"]


def generate(pipe, **kwargs):
    kwargs.setdefault("num_inference_steps", 3)
    return pipe.generate(REPORTS, age=[60, 70], sex=["M", "F"], heart_rate=[70, 110], **kwargs)


def test_output_shape_dtype_and_default_format(tiny_pipeline):
    ecgs = generate(tiny_pipeline, generator=torch.Generator().manual_seed(0))
    assert ecgs.shape == (2, 12, 1000) and ecgs.dtype == torch.float32
    assert torch.isfinite(ecgs).all()


def test_same_generator_same_result_and_per_ecg_generators_do_not_depend_on_batching(tiny_pipeline):
    a = generate(tiny_pipeline, generator=torch.Generator().manual_seed(1))
    b = generate(tiny_pipeline, generator=torch.Generator().manual_seed(1))
    c = generate(tiny_pipeline, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (10, 11)]  # noqa: E731
    whole = generate(tiny_pipeline, generator=gens())
    one_by_one = generate(tiny_pipeline, generator=gens(), batch_size=1)
    torch.testing.assert_close(whole, one_by_one, rtol=1e-4, atol=1e-5)


def test_lead_order_and_sampling_rate_conversions(tiny_pipeline):
    kwargs = dict(generator=torch.Generator().manual_seed(3))
    native = generate(tiny_pipeline, lead_order="model", sampling_rate=102.4, **dict(kwargs))
    assert native.shape == (2, 12, 1024)
    ptbxl_500 = generate(tiny_pipeline, sampling_rate=500, generator=torch.Generator().manual_seed(3))
    assert ptbxl_500.shape == (2, 12, 5000)
    expected = resample(reorder_leads(native, "model", "ptbxl"), 5000)
    torch.testing.assert_close(ptbxl_500, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,cls", [("ddpm", DDPMScheduler), ("ddim", DDIMScheduler), ("dpmsolver++", DPMSolverMultistepScheduler),
                                      ("sde-dpmsolver++", DPMSolverMultistepScheduler), ("unipc", UniPCMultistepScheduler)])
def test_schedulers_swap_and_share_the_noise_schedule(tiny_pipeline, name, cls):
    tiny_pipeline.set_scheduler(name)
    assert isinstance(tiny_pipeline.scheduler, cls) and tiny_pipeline.sampler_name == name
    assert tiny_pipeline.scheduler.config.beta_end == 0.012 and tiny_pipeline.scheduler.config.num_train_timesteps == 1000
    assert generate(tiny_pipeline, num_inference_steps=4, generator=torch.Generator().manual_seed(0)).shape == (2, 12, 1000)


def test_guidance_changes_output_and_is_refused_without_condition_dropout():
    pipe = make_tiny_pipeline()
    plain = generate(pipe, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pipe.unet.null_text_embedding.add_(1.0)  # make the unconditional branch differ
    guided = generate(pipe, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plain, guided)
    no_cfg = make_tiny_pipeline(null_condition=False)
    with pytest.raises(ValueError, match="condition dropout"):
        generate(no_cfg, guidance_scale=2.0)


def test_unknown_patient_information_needs_missing_indicators():
    pipe = make_tiny_pipeline()
    assert generate(pipe, generator=torch.Generator().manual_seed(0)).shape[0] == 2
    pipe.generate(REPORTS, age=None, sex=None, heart_rate=[70, 80], num_inference_steps=2)  # indicators: allowed
    strict = make_tiny_pipeline(patient_missing_indicators=False)
    with pytest.raises(ValueError, match="unknown"):
        strict.generate(REPORTS, age=[60, None], sex="M", heart_rate=70, num_inference_steps=2)


def test_bad_inputs_are_named(tiny_pipeline):
    with pytest.raises(ValueError, match="one value per report"):
        tiny_pipeline.generate(REPORTS, age=[60], sex="M", heart_rate=70)
    with pytest.raises(ValueError, match="'M', 'F'"):
        tiny_pipeline.generate(REPORTS, age=60, sex="male", heart_rate=70)
    with pytest.raises(ValueError, match="one generator per output ECG"):
        tiny_pipeline.generate(REPORTS, age=60, sex="M", heart_rate=70, generator=[torch.Generator()])
    with pytest.raises(ValueError, match="single string"):
        tiny_pipeline.generate("sinus rhythm", age=60, sex="M", heart_rate=70)


def test_num_samples_repeats_each_condition(tiny_pipeline):
    out = tiny_pipeline(REPORTS, [60, 70], ["M", "F"], [70, 110], num_samples=3, num_inference_steps=2, show_progress=False)
    assert out.ecgs.shape == (6, 12, 1000) and out.latents.shape == (6, 4, 128)


def test_save_and_from_pretrained_round_trip(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "model_index.json").read_text())["text_encoder"] == {"type": "hash"}
    loaded = DiffuSETSPipeline.from_pretrained(tmp_path / "model", text_encoder=HashTextEncoder(), scheduler=tiny_pipeline.sampler_name)
    assert loaded.model_id.startswith("tiny-test-")
    assert loaded.training_scheduler_config["clip_sample"] is False
    a = generate(tiny_pipeline, generator=torch.Generator().manual_seed(5))
    b = generate(loaded, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)


def test_unknown_model_name_lists_shipped_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped models"):
        DiffuSETSPipeline.from_pretrained(tmp_path / "nothing")


def test_text_encoder_dimension_must_match_the_unet():
    pipe = make_tiny_pipeline()
    with pytest.raises(ValueError, match="16-d"):
        DiffuSETSPipeline(pipe.vae, pipe.unet, pipe.scheduler, HashTextEncoder(dim=8))


def test_bfloat16_decoding_on_cpu_is_close_to_float32(tiny_pipeline):
    tiny_pipeline.cpu_decode_dtype = torch.float32
    assert tiny_pipeline.precision == "cpu-float32"
    full = generate(tiny_pipeline, generator=torch.Generator().manual_seed(4))
    tiny_pipeline.cpu_decode_dtype = torch.bfloat16
    assert tiny_pipeline.precision == "cpu-float32+bf16-decoding"
    fast = generate(tiny_pipeline, generator=torch.Generator().manual_seed(4))
    assert fast.dtype == torch.float32 and not torch.equal(full, fast)
    assert ((fast - full).pow(2).mean() / full.pow(2).mean()).sqrt() < 0.05


def test_decoding_defaults_to_bfloat16_where_the_cpu_has_native_bf16():
    pipe = make_tiny_pipeline()
    assert pipe.cpu_decode_dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)

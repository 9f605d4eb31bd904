import pytest
import torch

from cooper_lib.data.records import Item, SFTRecord, load_stage1_records
from cooper_lib.data.turns import TurnFormat
from cooper_lib.models.cooper import CharTokenizer, Image, Text, preset
from cooper_lib.training.cooper_data import CooperSFTCollator, CooperStage1Collator, ImageLatent, map_pixels

TOK = CharTokenizer()


def test_stage1_rows_become_samples_with_the_tool_call_and_the_map_as_a_pseudo_image(synthetic):
    config = preset("tiny")
    records = load_stage1_records([synthetic["stage1"] / "records.jsonl"])[:2]
    batch = CooperStage1Collator(config, TOK)(records)
    assert batch.ids == [r.id for r in records] and len(batch) == 2
    for record, sample in zip(records, batch.stage1, strict=True):
        assert sample.vae_pixels.shape == sample.target_pixels.shape == (3, 48, 48)  # 48 x 48 scenes
        assert sample.vit_pixels.shape == (3, 48, 48)
        assert float(sample.target_pixels.min()) >= -1 and float(sample.target_pixels.max()) <= 1
        want = map_pixels(record.modality, record.load_target(), (48, 48))
        assert torch.equal(sample.target_pixels, want)
        assert TOK.decode(sample.instruction_ids) == TurnFormat.default().tool_call(record.modality)
    with pytest.raises(ValueError, match="at least one record"):
        CooperStage1Collator(config, TOK)([])


def test_sft_records_are_laid_out_as_the_reasoner_reads_a_run(synthetic):
    record = SFTRecord(
        "r",
        [
            Item("image", str(synthetic["stage1"] / "images" / "000000.png")),
            Item("text", "Which is closer?"),
            Item("text", "<think>a</think><depth-estimation>d</depth-estimation>", need_loss=True),
            Item(
                "image",
                str(synthetic["stage1"] / "images" / "000000.png"),
                modality="depth",
                target=torch.ones(8, 8),
            ),
            Item("text", "<answer>\\boxed{A}</answer>", need_loss=True),
        ],
    )
    collator = CooperSFTCollator(preset("tiny"), TOK, system_prompt="sys")
    dialogue = collator(records=[record]).dialogues[0]
    kinds = [(type(item).__name__, flag) for item, flag in dialogue]
    assert kinds == [
        ("Text", False),  # the system prompt
        ("ImageLatent", False), ("Image", False),  # the question's image: VAE latent and ViT tokens
        ("Text", False), ("Text", True),
        ("ImageLatent", True), ("Image", False),  # the true map learnt, then read back as ViT tokens
        ("Text", True),
    ]  # fmt: skip
    assert dialogue[0][0] == Text((1, *TOK.encode("sys"), 2))
    assert isinstance(dialogue[5][0], ImageLatent) and isinstance(dialogue[6][0], Image)
    unsupervised = CooperSFTCollator(preset("tiny"), TOK, system_prompt="", supervise_maps=False)
    assert [type(i).__name__ for i, _ in unsupervised.dialogue(record)].count("ImageLatent") == 1
    with pytest.raises(ValueError, match="max_length"):
        CooperSFTCollator(preset("tiny"), TOK, max_length=10)([record])


def test_a_record_with_only_a_map_to_learn_trains_the_map_and_none_at_all_is_refused(synthetic):
    photo = str(synthetic["stage1"] / "images" / "000000.png")
    record = SFTRecord(
        "map-only",
        [
            Item("image", photo),
            Item("text", "<think></think><depth-estimation>d</depth-estimation>"),
            Item("image", photo, modality="depth", target=torch.ones(8, 8)),
        ],
    )
    dialogue = CooperSFTCollator(preset("tiny"), TOK, system_prompt="").dialogue(record)
    assert [(type(item).__name__, flag) for item, flag in dialogue if flag] == [("ImageLatent", True)]
    unsupervised = CooperSFTCollator(preset("tiny"), TOK, system_prompt="", supervise_maps=False)
    with pytest.raises(
        ValueError, match="record map-only: no item is flagged need_loss and no map is supervised"
    ):
        unsupervised([record])

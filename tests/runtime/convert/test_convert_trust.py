"""``convert`` runs no code from the files it is given unless told to trust them: a .pt2 whose
weight is pickled and a TorchScript file whose __setstate__ writes a file are refused in one line
naming --trust-source, before PyTorch opens them; plain .pt2 programs convert as before."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Tuple

import pytest
import torch

from onnxforge.runtime.convert import convert
from onnxforge.runtime.convert.trust import pt2_risks
from onnxforge.runtime.errors import UnsafeModelError


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


class Payload:
    """Unpickling this runs ``exec`` of ``code``: what an attacker's pickled weight does."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def plain_pt2(path):
    program = torch.export.export(Small().eval(), (torch.randn(2, 3),), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, path)
    return path


def pickled_pt2(path, marker):
    """A copy of a plain .pt2 whose weight 'fc.weight' is marked pickled and holds a payload that
    writes ``marker``."""
    source = plain_pt2(path.with_name("plain_for_attack.pt2"))
    with zipfile.ZipFile(source) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    config_name = next(n for n in entries if n.endswith("data/weights/model_weights_config.json"))
    config = json.loads(entries[config_name])
    config["config"]["fc.weight"]["use_pickle"] = True
    entries[config_name] = json.dumps(config).encode()
    buffer = io.BytesIO()
    torch.save(Payload(f"open({str(marker)!r}, 'w').write('ran')"), buffer)
    weight = config_name.rsplit("/", 1)[0] + "/" + config["config"]["fc.weight"]["path_name"]
    entries[weight] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


class SetStateWrites(torch.nn.Module):
    """A TorchScript module whose __setstate__ writes a file at torch.jit.load time (here with
    torch.from_file, as in the issue's attack)."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target
        self.mapped = torch.zeros(1)

    def forward(self, x):
        return x * 2.0

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.target = state[0]
        self.training = state[1]
        self.mapped = torch.from_file(self.target, shared=True, size=16)  # creates the file


def test_a_pt2_with_a_pickled_weight_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = pickled_pt2(tmp_path / "evil.pt2", marker)
    with pytest.raises(UnsafeModelError) as caught:
        convert(evil, tmp_path / "out.onnx")
    message = str(caught.value)
    assert "holds pickled content ('fc.weight' in " in message and "--trust-source" in message
    assert "\n" not in message
    assert not marker.exists() and not (tmp_path / "out.onnx").exists()
    # the payload is real: PyTorch's own loader runs it (and only then finds no tensor)
    with pytest.raises(Exception):  # noqa: B017 - whatever PyTorch raises after the payload ran
        torch.export.load(evil)
    assert marker.read_text() == "ran"


def test_an_old_format_pt2_with_pickled_state_is_refused(tmp_path):
    """The archive format torch.export.load falls back to keeps its state dict pickled."""
    marker = tmp_path / "marker.txt"
    buffer = io.BytesIO()
    torch.save(Payload(f"open({str(marker)!r}, 'w').write('ran')"), buffer)
    with zipfile.ZipFile(tmp_path / "old.pt2", "w") as z:
        z.writestr("version", "8.0")
        z.writestr("serialized_exported_program.json", "{}")
        z.writestr("serialized_state_dict.pt", buffer.getvalue())
        z.writestr("serialized_constants.pt", buffer.getvalue())
    risks = pt2_risks(tmp_path / "old.pt2")
    assert risks[0] == "an old-format torch.export archive, whose state is pickled"
    assert "pickled entry 'serialized_state_dict.pt'" in risks
    with pytest.raises(UnsafeModelError, match="--trust-source"):
        convert(tmp_path / "old.pt2", tmp_path / "out.onnx")
    assert not marker.exists()


def test_a_torchscript_file_with_setstate_side_effects_is_refused_and_writes_nothing(tmp_path):
    target = tmp_path / "written_by_setstate"
    torch.jit.script(SetStateWrites(str(target))).save(str(tmp_path / "evil.pt"))
    assert not target.exists()
    with pytest.raises(UnsafeModelError) as caught:
        convert(tmp_path / "evil.pt", tmp_path / "out.onnx", input_shapes=["1,3"])
    assert "is a TorchScript archive, whose methods and __setstate__ run when it is loaded" in str(caught.value)
    assert "--trust-source" in str(caught.value)
    assert not target.exists() and not (tmp_path / "out.onnx").exists()
    torch.jit.load(str(tmp_path / "evil.pt"))  # the payload is real: loading writes the file
    assert target.exists()


def test_the_cli_refuses_in_one_line_and_names_the_flag(tmp_path, cli_run):
    torch.jit.script(Small().eval()).save(str(tmp_path / "net.pt"))
    res = cli_run("convert", tmp_path / "net.pt", "-o", tmp_path / "n.onnx", "--input-shape", "1,3", "--quiet")
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and res.output.startswith("Error: ") and "--trust-source" in res.output
    res = cli_run("convert", tmp_path / "net.pt", "-o", tmp_path / "n.onnx", "--input-shape", "1,3", "--quiet",
                  "--trust-source")
    assert res.exit_code == 0, res.output


def test_a_plain_pt2_has_no_risks_and_converts_without_trust(tmp_path):
    path = plain_pt2(tmp_path / "plain.pt2")
    assert pt2_risks(path) == []
    report = convert(path, tmp_path / "plain.onnx")
    assert report["verified"]


def test_a_file_that_is_not_a_zip_is_one_model_error(tmp_path):
    (tmp_path / "junk.pt2").write_bytes(b"not a zip at all")
    from onnxforge.runtime.errors import ModelError

    with pytest.raises(ModelError, match="is not a torch.export program \\(not a readable zip archive"):
        convert(tmp_path / "junk.pt2", tmp_path / "x.onnx")

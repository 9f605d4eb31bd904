import base64
import io

from PIL import Image

from cooper_lib.reasoning.render import png_base64, trace_to_html, trace_to_image


def test_to_html_is_self_contained(trace, tmp_path):
    page = trace.to_html(tmp_path / "t.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "<span class='tag'>&lt;answer&gt;</span>" in page
    assert "Which?" in page and "stopped by answer" in page


def test_to_image_stacks_the_steps(trace):
    picture = trace.to_image(width=400, image_height=50)
    assert picture.width == 400 and picture.height > 2 * 50


def test_functions_and_methods_draw_the_same(trace, tmp_path):
    assert (
        trace_to_html(trace, tmp_path / "a.html").read_text()
        == trace.to_html(tmp_path / "b.html").read_text()
    )
    assert trace_to_image(trace, 300, 40).tobytes() == trace.to_image(300, 40).tobytes()


def test_png_base64_round_trips():
    image = Image.new("RGB", (3, 2), (1, 2, 3))
    decoded = Image.open(io.BytesIO(base64.b64decode(png_base64(image))))
    assert decoded.size == (3, 2) and decoded.getpixel((0, 0)) == (1, 2, 3)

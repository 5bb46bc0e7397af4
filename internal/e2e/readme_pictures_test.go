package e2e

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/dubebox/dubebox/internal/servicetest"
)

// TestReadmePictures checks every picture the README shows (make
// screenshot takes them): it exists, is large enough to read, and shows
// something: enough coloured pixels (the graphs' lines, the docs page's
// method badges) rather than an empty frame.
func TestReadmePictures(t *testing.T) {
	t.Parallel()
	top := servicetest.Root()
	readme, err := os.ReadFile(filepath.Join(top, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`!\[[^\]]+\]\((docs/[^)]+\.png)\)`).FindAllSubmatch(readme, -1)
	if len(refs) < 5 {
		t.Fatalf("the README shows %d pictures, want the four dashboard panels and the docs page (make screenshot)", len(refs))
	}
	for _, ref := range refs {
		checkPicture(t, filepath.Join(top, string(ref[1])))
	}
}

// checkPicture fails the test unless the PNG at path is at least
// 1000x400 and has enough coloured pixels to show something.
func checkPicture(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("%s: %v (make screenshot takes it)", path, err)
		return
	}
	img, err := png.Decode(f)
	_ = f.Close()
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	b := img.Bounds()
	if b.Dx() < 1000 || b.Dy() < 400 {
		t.Errorf("%s is %dx%d, want at least 1000x400", path, b.Dx(), b.Dy())
	}
	if n, want := coloured(img), b.Dx()*b.Dy()/500; n < want {
		t.Errorf("%s has %d coloured pixels, want at least %d: an empty graph or page?", path, n, want)
	}
}

// coloured counts the pixels that are neither white, black nor grey.
func coloured(img image.Image) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			hi, lo := max(r, g, bl), min(r, g, bl)
			if hi-lo > 0x3000 {
				n++
			}
		}
	}
	return n
}

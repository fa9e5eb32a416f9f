package crypto

import "testing"

func benchData() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func BenchmarkSeal1MiB(b *testing.B) {
	k := newTestKey(b)
	data := benchData()
	dst := make([]byte, 0, len(data)+Overhead)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dst = mustSeal(b, k, dst[:0], data, nil)
	}
}

func BenchmarkOpen1MiB(b *testing.B) {
	k := newTestKey(b)
	data := benchData()
	sealed := mustSeal(b, k, nil, data, nil)
	dst := make([]byte, 0, len(data))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = k.Open(dst[:0], sealed, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealSmall(b *testing.B) {
	k := newTestKey(b)
	data := make([]byte, 256)
	dst := make([]byte, 0, len(data)+Overhead)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dst = mustSeal(b, k, dst[:0], data, nil)
	}
}

func BenchmarkBlobID1MiB(b *testing.B) {
	k := newTestKey(b)
	data := benchData()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		k.BlobID(data)
	}
}

func BenchmarkBlobIDBLAKE31MiB(b *testing.B) {
	f, err := newTestKey(b).BlobIDFunc(BlobIDBLAKE3)
	if err != nil {
		b.Fatal(err)
	}
	data := benchData()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		f(data)
	}
}

func BenchmarkBlobIDParallel1MiB(b *testing.B) {
	k := newTestKey(b)
	data := benchData()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k.BlobID(data)
		}
	})
}

func BenchmarkUnwrapDefault(b *testing.B) {
	k := newTestKey(b)
	p, err := DefaultKDFParams()
	if err != nil {
		b.Fatal(err)
	}
	s, err := WrapKey(k, []byte("passphrase"), p, SlotInfo{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnwrapKey(s, []byte("passphrase")); err != nil {
			b.Fatal(err)
		}
	}
}

// The seal suites side by side, as a backup and a restore use them:
// in place, on 1 MiB chunks and on small objects.
func BenchmarkSuites(b *testing.B) {
	data := benchData()
	for _, suite := range []string{SuiteXAES, SuiteFIPS} {
		k, err := NewKeyFor(suite)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{256, 1 << 20} {
			name := suite + "/" + map[int]string{256: "256B", 1 << 20: "1MiB"}[n]
			b.Run("SealInPlace/"+name, func(b *testing.B) {
				buf := make([]byte, k.SealPrefix()+n, k.SealPrefix()+n+k.Overhead())
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					copy(buf[k.SealPrefix():], data[:n])
					k.SealInPlace(buf[:k.SealPrefix()+n], nil)
				}
			})
			b.Run("OpenInPlace/"+name, func(b *testing.B) {
				sealed := mustSeal(b, k, nil, data[:n], nil)
				buf := make([]byte, len(sealed))
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					copy(buf, sealed)
					if _, err := k.OpenInPlace(buf, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkUnwrapPBKDF2Default(b *testing.B) {
	k, err := NewKeyFor(SuiteFIPS)
	if err != nil {
		b.Fatal(err)
	}
	p, err := DefaultPBKDF2Params()
	if err != nil {
		b.Fatal(err)
	}
	s, err := WrapKey(k, []byte("a passphrase of some length"), p, SlotInfo{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnwrapKey(s, []byte("a passphrase of some length")); err != nil {
			b.Fatal(err)
		}
	}
}

/* mteswap real-kernel oracle: guest runtime (shared by the batch program and the export).
 *
 * A controller process forks the scenario's first process; every scenario process runs a
 * worker loop that reads step numbers from its own pipe, performs the step on its own memory
 * and acknowledges on a shared pipe, so steps keep their order across fork.  Global steps
 * (reclaim, evict, split, swapoff) are done by the controller.  Tags are set with STG and
 * checked by tag-checked loads/stores in synchronous mode (SIGSEGV/SEGV_MTESERR caught with
 * sigsetjmp) and LDG.  The controller and every worker run on CPU 0 only (sched_setaffinity
 * before the first fork), so frames freed by one step go to the per-CPU lists the next
 * allocation takes from.  Every process keeps its own memory (the program's stack, heap and
 * data) mlocked, and only the scenario's VMAs evictable, so that the cgroup reclaim a `reclaim`
 * step may need takes nothing of the program's (hold_others() keeps the scenario's other folios
 * out of it too).  The generated part defines the scenario tables before this file.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROT_MTE_ 0x20
#define MADV_PAGEOUT_ 21
#define HWCAP2_MTE_ (1UL << 18)
#define PR_SET_TAGGED_ADDR_CTRL_ 55
#define PR_TAGGED_ADDR_ENABLE_ 1UL
#define PR_MTE_TCF_SYNC_ (1UL << 1)
#define PR_MTE_TAG_SHIFT_ 3
#define SEGV_MTESERR_ 9
#define PG 4096UL
#define GRAN 16UL
#define MAXP 16
#define MAXV 32
#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

static uint8_t *vbase[MAXV];
static int vnp[MAXV];
static uint8_t *vmte[MAXV], *vtag[MAXV], *vgone[MAXV]; /* vgone: pages this process munmapped */
static uint64_t *vval[MAXV];
static int me;
static int cmdfd[MAXP][2];
static int ackfd[2];
static const scen_t *S;
static sigjmp_buf jb;
static volatile int in_check;
static volatile int fault_code;
static volatile uintptr_t fault_addr;

struct ack { int step, nviol, pid, childpid; uint64_t base; };

static void out(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 1)
		n = sizeof buf - 1;
	ssize_t w = write(1, buf, n);
	(void)w;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)uc;
	if (in_check) {
		in_check = 0;
		fault_code = si->si_code;
		fault_addr = (uintptr_t)si->si_addr;
		siglongjmp(jb, 1);
	}
	out("%s SEGV outside a check: code %d addr %p\n", OUT_PREFIX_FATAL, si->si_code, si->si_addr);
	_exit(97);
}

static inline void *tagp(void *p, unsigned t) { return (void *)(((uintptr_t)p & ~(0xfUL << 56)) | ((uint64_t)t << 56)); }
static inline void stg(void *p) { asm volatile("stg %0, [%0]" : : "r"(p) : "memory"); }
static inline unsigned ldg(void *p)
{
	uint64_t a = (uint64_t)p;
	asm volatile("ldg %0, [%0]" : "+r"(a) : : "memory");
	return (a >> 56) & 0xf;
}

static int mte_available(void) { return (getauxval(AT_HWCAP2) & HWCAP2_MTE_) != 0; }
static int mte_enable(void)
{
	return prctl(PR_SET_TAGGED_ADDR_CTRL_, PR_TAGGED_ADDR_ENABLE_ | PR_MTE_TCF_SYNC_ | (0xfffeUL << PR_MTE_TAG_SHIFT_), 0, 0, 0);
}

static void violation(int k, const char *kind, int v, int p, const char *fmt, ...)
{
	char d[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d, sizeof d, fmt, ap);
	va_end(ap);
	out("%s %d %s %s %s %d %s\n", OUT_PREFIX_VIOL, k, kind, S->procnames[me], S->vmanames[v], p, d);
}

static uint64_t value_for(int k, int p) { return 0x4d54450000000000ULL | ((uint64_t)k << 24) | ((uint64_t)me << 16) | (uint64_t)p; }

/* kind: 0 read, 1 write, 2 stg only */
static int touch_page(int k, int v, int p, int kind, int tagmode, int tag)
{
	uint8_t *pg = vbase[v] + (uintptr_t)p * PG;
	int nv = 0;
	/* STG even where the page has no PROT_MTE: the tags are dropped there, but the store
	 * still needs the page writable, so a page not present is faulted in (as in the model) */
	if (kind != 0 && tagmode) {
		unsigned t = tagmode == 2 ? (unsigned)(p % 15 + 1) : (unsigned)tag;
		static volatile unsigned long g;
		if (sigsetjmp(jb, 1)) {
			violation(k, "kernel-fault", v, p, "STG faulted: si_code %d", fault_code);
			return 1;
		}
		in_check = 1;
		for (g = 0; g < PG / GRAN; g++)
			stg(tagp(pg + g * GRAN, t));
		in_check = 0;
		if (vmte[v][p])
			vtag[v][p] = t;
	}
	if (kind == 2)
		return 0;
	unsigned pt = vmte[v][p] ? vtag[v][p] : 0;
	uint8_t *tp = tagp(pg, pt);
	static volatile unsigned long gi;
	static volatile uint64_t got0, got1;
	static volatile int bad;
	bad = -1;
	if (sigsetjmp(jb, 1)) {
		unsigned found = ldg(pg + gi * GRAN);
		if (fault_code == SEGV_MTESERR_)
			violation(k, "tag-check-fault", v, p, "expected tag %u, found %u (granule %lu)", pt, found, gi);
		else
			violation(k, "kernel-fault", v, p, "SIGSEGV si_code %d at granule %lu", fault_code, gi);
		if (kind == 1)
			vval[v][p] = value_for(k, p);
		return 1;
	}
	in_check = 1;
	if (kind == 1) {
		uint64_t val = value_for(k, p);
		for (gi = 0; gi < PG / GRAN; gi++) {
			volatile uint64_t *w = (volatile uint64_t *)(tp + gi * GRAN);
			w[0] = val;
			w[1] = val;
		}
		in_check = 0;
		vval[v][p] = val;
		return 0;
	}
	for (gi = 0; gi < PG / GRAN; gi++) {
		volatile uint64_t *w = (volatile uint64_t *)(tp + gi * GRAN);
		got0 = w[0];
		got1 = w[1];
		if (bad < 0 && (got0 != vval[v][p] || got1 != vval[v][p]))
			bad = (int)gi;
	}
	in_check = 0;
	if (bad >= 0) {
		volatile uint64_t *w = (volatile uint64_t *)(tp + (unsigned long)bad * GRAN);
		uint64_t g0 = w[0];
		violation(k, "data-corruption", v, p, "expected 0x%llx, found 0x%llx (granule %d)",
			  (unsigned long long)vval[v][p], (unsigned long long)g0, bad);
		nv++;
	}
	return nv;
}

/* apply fn to maximal runs of consecutive pages */
static int runs(const step_t *st, int (*fn)(uint8_t *, size_t, int), int arg)
{
	int i = 0, rc = 0;
	while (i < st->n) {
		int j = i;
		while (j + 1 < st->n && st->pg[j + 1] == st->pg[j] + 1)
			j++;
		if (fn(vbase[st->vma] + (uintptr_t)st->pg[i] * PG, (size_t)(j - i + 1) * PG, arg))
			rc = -1;
		i = j + 1;
	}
	return rc;
}
static int do_munmap(uint8_t *a, size_t l, int x) { (void)x; return munmap(a, l); }
static int do_mprotect(uint8_t *a, size_t l, int x) { (void)x; return mprotect(a, l, PROT_READ | PROT_WRITE | PROT_MTE_); }
static int do_madvise(uint8_t *a, size_t l, int adv) { return madvise(a, l, adv); }

/* /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h; KPF_ARCH_2 from the
 * kernel-internal include/linux/kernel-page-flags.h): PG_arch_2 is PG_mte_tagged on arm64.
 * stable_page_flags (fs/proc/page.c) reads the folio's flags, so every page of a large folio
 * shows the head's PG_mte_tagged. */
#define KPF_COMPOUND_HEAD_ 15
#define KPF_THP_ 22
#define KPF_ZERO_PAGE_ 24
#define KPF_ARCH_2_ 41
#define PM_PRESENT_ (1ULL << 63)
#define PM_SWAP_ (1ULL << 62)
#define PM_PFN_MASK_ ((1ULL << 55) - 1)
/* a command k <= STATE_PROBE asks the worker for the state of step (STATE_PROBE - k)'s VMA;
 * k <= RECLAIM_CMD to reclaim step (RECLAIM_CMD - k)'s folios itself (reclaim_own) */
#define STATE_PROBE (-(1 << 24))
#define RECLAIM_CMD (-(1 << 25))

/* One page of this process's VMA v in the --states letters (docs/scenario-format.md):
 * where[0] H/t head/tail of a large folio, p small folio, z zero page, S swap PTE, C swap PTE
 * whose folio is in the swap cache (mincore reports a swap entry resident when the swap cache
 * holds its folio), - no PTE, x unmapped; where[1] M/. PG_mte_tagged of a present page, else
 * a space. */
static void page_letters(int pmfd, int kpffd, int v, int p, char *where)
{
	uint8_t *a = vbase[v] + (uintptr_t)p * PG;
	unsigned char vec = 0;
	uint64_t e = 0, f = 0;
	where[1] = ' ';
	if ((vgone[v] && vgone[v][p]) || (mincore(a, PG, &vec) && errno == ENOMEM)) {
		where[0] = 'x';
		return;
	}
	if (pread(pmfd, &e, 8, (off_t)((uintptr_t)a / PG) * 8) != 8) {
		where[0] = '?';
		return;
	}
	if (e & PM_SWAP_) {
		where[0] = (vec & 1) ? 'C' : 'S';
		return;
	}
	if (!(e & PM_PRESENT_)) {
		where[0] = '-';
		return;
	}
	uint64_t pfn = e & PM_PFN_MASK_;
	if (!pfn || kpffd < 0 || pread(kpffd, &f, 8, (off_t)pfn * 8) != 8) {
		where[0] = where[1] = '?';
		return;
	}
	if (f & (1ULL << KPF_ZERO_PAGE_))
		where[0] = 'z';
	else if (f & (1ULL << KPF_THP_))
		where[0] = (f & (1ULL << KPF_COMPOUND_HEAD_)) ? 'H' : 't';
	else
		where[0] = 'p';
	where[1] = (f & (1ULL << KPF_ARCH_2_)) ? 'M' : '.';
}

/* Print the state of VMA v of this process after step k: "STEP PAGES MTE" (spaces of MTE as
 * '_' so the line splits on blanks). */
static void print_state(int k, int v)
{
	if (v < 0 || v >= MAXV || !vbase[v])
		return;
	static char pages[1024], mte[1024];
	int n = vnp[v] < (int)sizeof pages - 1 ? vnp[v] : (int)sizeof pages - 1;
	int pmfd = open("/proc/self/pagemap", O_RDONLY);
	int kpffd = open("/proc/kpageflags", O_RDONLY);
	for (int p = 0; p < n; p++) {
		char w[2];
		if (pmfd < 0) {
			w[0] = w[1] = '?';
		} else {
			page_letters(pmfd, kpffd, v, p, w);
		}
		pages[p] = w[0];
		mte[p] = w[1] == ' ' ? '_' : w[1];
	}
	pages[n] = mte[n] = 0;
	if (pmfd >= 0)
		close(pmfd);
	if (kpffd >= 0)
		close(kpffd);
	out("%s %d %s %s\n", OUT_PREFIX_STATE, k, pages, mte);
}

/* ------------------------------------------------------------------ what reclaim may take
 *
 * The cgroup's memory.reclaim (the fallback of `reclaim`, and `evict`) scans every folio
 * charged to the test's cgroup. An mlocked folio sits on the unevictable list, which reclaim
 * does not scan, and a folio mapped in a VM_LOCKED VMA is not unmapped (try_to_unmap_one
 * stops at such a mapping; folio_referenced_one mlocks a small folio it finds there), so:
 * - the program's own memory (stack, heap, data) is locked in every process for the whole
 *   scenario (lock_program), so reclaim takes none of it and none of its pages take swap slots;
 * - around a cgroup reclaim, every process locks the scenario pages that do not map one of the
 *   step's target folios (hold_others), and unlocks them after (release_held), when munlock's
 *   vma_modify_flags merges the VMAs the lock split back into one.
 * MCL_ONFAULT / MLOCK_ONFAULT: nothing is faulted in by the lock. */
#define KPF_COMPOUND_TAIL_ 16
#define HOLD_CMD (-(1 << 26))
#define RELEASE_CMD (-(1 << 27))
#define MAXT 1024
#define MAXHELD 4096

static int mlock_onfault(uintptr_t a, size_t l)
{
	return syscall(SYS_mlock2, a, l, MLOCK_ONFAULT) ? errno : 0;
}

/* lock [lo, hi) but the scenario's VMAs (from index v0 on; the ones before do not meet it) */
static void lock_outside(uintptr_t lo, uintptr_t hi, int v0)
{
	for (int v = v0; v < MAXV && lo < hi; v++) {
		if (!vbase[v])
			continue;
		uintptr_t s = (uintptr_t)vbase[v], e = s + (uintptr_t)vnp[v] * PG;
		if (e <= lo || s >= hi)
			continue;
		if (s > lo)
			lock_outside(lo, s, v + 1);
		lo = e;
	}
	if (lo < hi)
		mlock_onfault(lo, hi - lo);
}

/* Lock the program's own memory, now and (MCL_FUTURE: heap growth, calloc'd tables) later.
 * A scenario mmap made after this is munlocked at once (worker, OP_MMAP). fork passes no
 * lock on (the child's VMAs lose VM_LOCKED, its mm's def_flags too), so a fork child locks
 * again: MCL_FUTURE, and every mapping but the scenario VMAs it inherited unlocked. Returns
 * 0, or errno. */
static int lock_program(int fork_child)
{
	if (mlockall(fork_child ? MCL_FUTURE | MCL_ONFAULT : MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT))
		return errno;
	if (!fork_child)
		return 0;
	static char maps[65536];
	int fd = open("/proc/self/maps", O_RDONLY), n = 0;
	ssize_t r = 1;
	if (fd < 0)
		return errno;
	while (n < (int)sizeof maps - 1 && (r = read(fd, maps + n, sizeof maps - 1 - n)) > 0)
		n += (int)r;
	close(fd);
	maps[n] = 0;
	/* all lines read first: the locks below split VMAs, which would change the file */
	for (char *l = maps; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		unsigned long lo, hi;
		if (sscanf(l, "%lx-%lx", &lo, &hi) == 2)
			lock_outside(lo, hi, 0);
	}
	return 0;
}

/* the target folios of a cgroup reclaim, as PFN extents [tg_lo, tg_hi); ntg -1: unknown */
static uint64_t tg_lo[MAXT], tg_hi[MAXT];
static int ntg = -1;
static uintptr_t held_at[MAXHELD];
static size_t held_len[MAXHELD];
static int nheld;

/* The PFNs [lo, hi) of the folio holding pfn: a large folio's pages are found in
 * /proc/kpageflags from its head (KPF_COMPOUND_HEAD) over its tails (KPF_COMPOUND_TAIL). */
static void folio_extent(int kpffd, uint64_t pfn, uint64_t *lo, uint64_t *hi)
{
	uint64_t f = 0, h = pfn;
	*lo = pfn;
	*hi = pfn + 1;
	if (pread(kpffd, &f, 8, (off_t)pfn * 8) != 8 || !(f & (1ULL << KPF_THP_)))
		return;
	for (int i = 0; i < 512 && h > 0 && !(f & (1ULL << KPF_COMPOUND_HEAD_)); i++)
		if (pread(kpffd, &f, 8, (off_t)--h * 8) != 8)
			return;
	if (!(f & (1ULL << KPF_COMPOUND_HEAD_)))
		return;
	uint64_t e = h + 1;
	while (e - h < 512 && pread(kpffd, &f, 8, (off_t)e * 8) == 8 && (f & (1ULL << KPF_COMPOUND_TAIL_)))
		e++;
	*lo = h;
	*hi = e;
}

static int is_target(uint64_t pfn)
{
	for (int i = 0; i < ntg; i++)
		if (pfn >= tg_lo[i] && pfn < tg_hi[i])
			return 1;
	return 0;
}

/* Whether page p of VMA v stays out of the coming reclaim: still mapped by this process and
 * not mapping a target folio (a page without a PTE is held too, so that a run covers the whole
 * virtual extent of a folio around it). */
static int hold_page(int pmfd, int v, int p)
{
	uint64_t e = 0;
	if (vgone[v][p])
		return 0;
	if (pread(pmfd, &e, 8, (off_t)((uintptr_t)(vbase[v] + (uintptr_t)p * PG) / PG) * 8) != 8)
		return 1;
	return !((e & PM_PRESENT_) && is_target(e & PM_PFN_MASK_));
}

/* A large folio mlock cannot hold (one partly mapped, or across a VMA boundary) would still be
 * split: by the deferred-split shrinker, which memory.reclaim runs for the cgroup, and by
 * shrink_folio_list, which splits a partly mapped folio before swapping it. Both give up on a
 * folio with a reference they do not expect (can_split_folio, split_folio), so each such folio
 * gets one for the time of the reclaim: one of its pages is vmspliced into a pipe
 * (iter_to_pipe takes page references, FOLL_GET: no pin, so a folio shared after fork is not
 * unshared, and nothing is faulted in or copied); closing the pipe drops them. Done for every
 * large folio held, mlocked or not. Returns the folios referenced. */
static int refpipe[2] = { -1, -1 };

static int ref_large_folios(void)
{
	int pmfd = open("/proc/self/pagemap", O_RDONLY), kpffd = open("/proc/kpageflags", O_RDONLY), nref = 0;
	uint64_t last_lo = 0, last_hi = 0;
	if (pmfd < 0 || kpffd < 0 || pipe2(refpipe, O_NONBLOCK)) {
		refpipe[0] = refpipe[1] = -1;
		goto out;
	}
	fcntl(refpipe[1], F_SETPIPE_SZ, 1 << 20);
	for (int i = 0; i < nheld; i++) {
		for (uintptr_t a = held_at[i]; a < held_at[i] + held_len[i]; a += PG) {
			uint64_t e = 0, f = 0, lo, hi;
			if (pread(pmfd, &e, 8, (off_t)(a / PG) * 8) != 8 || !(e & PM_PRESENT_) ||
			    pread(kpffd, &f, 8, (off_t)(e & PM_PFN_MASK_) * 8) != 8 || !(f & (1ULL << KPF_THP_)))
				continue;
			if ((e & PM_PFN_MASK_) >= last_lo && (e & PM_PFN_MASK_) < last_hi)
				continue;
			folio_extent(kpffd, e & PM_PFN_MASK_, &lo, &hi);
			last_lo = lo;
			last_hi = hi;
			struct iovec iov = { (void *)a, 1 };
			if (vmsplice(refpipe[1], &iov, 1, SPLICE_F_NONBLOCK) == 1)
				nref++;
		}
	}
out:
	if (pmfd >= 0)
		close(pmfd);
	if (kpffd >= 0)
		close(kpffd);
	return nref;
}

/* Lock every run of this process's scenario pages that do not map a target folio. A run ends
 * only at a target page, a page this process unmapped or the VMA's end, so it covers every
 * other folio this process maps fully; mlock_pte_range (allow_mlock_munlock) mlocks a large
 * folio only when the locked range holds all of it, fully mapped. Returns the pages held. */
static int hold_others(void)
{
	int pmfd = open("/proc/self/pagemap", O_RDONLY), held = 0;
	nheld = 0;
	if (pmfd < 0)
		return 0;
	for (int v = 0; v < MAXV; v++) {
		if (!vbase[v])
			continue;
		for (int p = 0; p < vnp[v];) {
			if (!hold_page(pmfd, v, p)) {
				p++;
				continue;
			}
			int q = p;
			while (q < vnp[v] && hold_page(pmfd, v, q))
				q++;
			if (nheld < MAXHELD) {
				held_at[nheld] = (uintptr_t)vbase[v] + (uintptr_t)p * PG;
				held_len[nheld++] = (size_t)(q - p) * PG;
				mlock_onfault((uintptr_t)vbase[v] + (uintptr_t)p * PG, (size_t)(q - p) * PG);
				held += q - p;
			}
			p = q;
		}
	}
	close(pmfd);
	return held;
}

static void release_held(void)
{
	for (int i = 0; i < nheld; i++)
		munlock((void *)held_at[i], held_len[i]);
	nheld = 0;
	if (refpipe[0] >= 0) {
		close(refpipe[0]);
		close(refpipe[1]);
		refpipe[0] = refpipe[1] = -1;
	}
}

static int read_full(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t r = read(fd, (char *)buf + got, len - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	return write(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

/* Record the folios mapped at the pages `want` of VMA v as the targets of a cgroup reclaim
 * (whole folios, by PFN, so every process can tell its pages of them). */
static void record_targets(int pmfd, int kpffd, int v, int n, const char *want, const char *letter)
{
	ntg = 0;
	for (int p = 0; p < n; p++) {
		uint64_t e = 0, lo, hi;
		if (!want[p] || !strchr("Htp", letter[p]))
			continue;
		if (pread(pmfd, &e, 8, (off_t)((uintptr_t)(vbase[v] + (uintptr_t)p * PG) / PG) * 8) != 8 ||
		    !(e & PM_PRESENT_)) {
			ntg = -1;
			return;
		}
		folio_extent(kpffd, e & PM_PFN_MASK_, &lo, &hi);
		if (is_target(lo))
			continue;
		if (ntg == MAXT) {
			ntg = -1;
			return;
		}
		tg_lo[ntg] = lo;
		tg_hi[ntg++] = hi;
	}
}

/* A `reclaim` (keep_cached false) of step st's folios by MADV_PAGEOUT of the range widened
 * to whole folios, so no folio is split (memory-pressure reclaim takes a large folio whole)
 * and nothing outside them is touched (memory.reclaim would take the whole cgroup's memory).
 * Only when that is the same as reclaim: every folio of the range is mapped once (MADV_PAGEOUT
 * skips a shared folio, reclaim unmaps it everywhere through the rmap walk) and lies in one
 * VMA (MADV_PAGEOUT works VMA by VMA and splits a folio crossing a boundary). Returns 0 when
 * done, 1 when the caller must reclaim through the cgroup instead, the folios to reclaim then
 * recorded as the targets (ntg -1 when they could not be read). */
static int reclaim_own(const step_t *st)
{
	int v = st->vma, n = vnp[v];
	static char want[1024], letter[1024];
	ntg = -1;
	if (n > (int)sizeof want)
		return 1;
	int pmfd = open("/proc/self/pagemap", O_RDONLY), kpffd = open("/proc/kpageflags", O_RDONLY);
	int kpcfd = open("/proc/kpagecount", O_RDONLY);
	int bad = pmfd < 0 || kpffd < 0 || kpcfd < 0, rc = bad;
	for (int p = 0; p < n && !bad; p++) {
		char w[2];
		page_letters(pmfd, kpffd, v, p, w);
		letter[p] = w[0];
		want[p] = 0;
	}
	/* every page of the range is looked at (the targets of a fallback are all its folios) */
	for (int i = 0; i < st->n && !bad; i++) {
		int lo = st->pg[i], hi = st->pg[i];
		if (letter[lo] == 't' || letter[lo] == 'H') {
			while (lo > 0 && letter[lo] == 't' && (letter[lo - 1] == 't' || letter[lo - 1] == 'H'))
				lo--;
			while (hi + 1 < n && letter[hi + 1] == 't')
				hi++;
		}
		for (int p = lo; p <= hi; p++) {
			uint64_t e = 0, cnt = 0;
			want[p] = 1;
			if (vmte[v][p] != vmte[v][lo])
				rc = 1; /* two VMAs (a partial mprotect) */
			if (strchr("Htp", letter[p]) &&
			    (pread(pmfd, &e, 8, (off_t)((uintptr_t)(vbase[v] + (uintptr_t)p * PG) / PG) * 8) != 8 ||
			     pread(kpcfd, &cnt, 8, (off_t)(e & PM_PFN_MASK_) * 8) != 8 || cnt > 1))
				rc = 1; /* mapped more than once: shared after fork */
		}
	}
	for (int p = 0; p < n && !rc;) {
		if (!want[p]) {
			p++;
			continue;
		}
		int q = p;
		while (q < n && want[q])
			q++;
		madvise(vbase[v] + (uintptr_t)p * PG, (size_t)(q - p) * PG, MADV_PAGEOUT_);
		p = q;
	}
	if (rc && !bad)
		record_targets(pmfd, kpffd, v, n, want, letter);
	if (pmfd >= 0)
		close(pmfd);
	if (kpffd >= 0)
		close(kpffd);
	if (kpcfd >= 0)
		close(kpcfd);
	return rc;
}

static void worker(void)
{
	for (;;) {
		int k;
		if (read(cmdfd[me][0], &k, sizeof k) != sizeof k)
			_exit(0);
		if (k <= RELEASE_CMD) {
			struct ack a = { k, 0, getpid(), 0, 0 };
			release_held();
			if (write(ackfd[1], &a, sizeof a) != sizeof a)
				_exit(3);
			continue;
		}
		if (k <= HOLD_CMD) { /* the targets follow the command: count, then lo[], hi[] */
			if (read_full(cmdfd[me][0], &ntg, sizeof ntg) || ntg < 0 || ntg > MAXT ||
			    read_full(cmdfd[me][0], tg_lo, ntg * sizeof tg_lo[0]) ||
			    read_full(cmdfd[me][0], tg_hi, ntg * sizeof tg_hi[0]))
				_exit(3);
			struct ack a = { k, hold_others(), getpid(), 0, 0 };
			a.childpid = ref_large_folios();
			if (write(ackfd[1], &a, sizeof a) != sizeof a)
				_exit(3);
			continue;
		}
		if (k <= RECLAIM_CMD) { /* after the ack of a fallback: the targets, as for HOLD_CMD */
			struct ack a = { k, reclaim_own(&S->steps[RECLAIM_CMD - k - 1]), getpid(), 0, 0 };
			int nt = a.nviol ? ntg : -1;
			if (write_full(ackfd[1], &a, sizeof a) || write_full(ackfd[1], &nt, sizeof nt) ||
			    (nt > 0 && (write_full(ackfd[1], tg_lo, nt * sizeof tg_lo[0]) ||
					write_full(ackfd[1], tg_hi, nt * sizeof tg_hi[0]))))
				_exit(3);
			continue;
		}
		if (k <= STATE_PROBE) {
			int sk = STATE_PROBE - k;
			struct ack a = { k, 0, getpid(), 0, 0 };
			print_state(sk, S->steps[sk - 1].vma);
			if (write(ackfd[1], &a, sizeof a) != sizeof a)
				_exit(3);
			continue;
		}
		if (k < 0) { /* probe: how many of step -k's pages are swap PTEs whose folio is in
			      * the swap cache (`C`; mincore alone also counts a present page,
			      * the zero page included) */
			const step_t *pr = &S->steps[-k - 1];
			struct ack a = { k, 0, getpid(), 0, 0 };
			int pmfd = open("/proc/self/pagemap", O_RDONLY), kpffd = open("/proc/kpageflags", O_RDONLY);
			for (int i = 0; i < pr->n; i++) {
				char w[2];
				page_letters(pmfd, kpffd, pr->vma, pr->pg[i], w);
				if (w[0] == 'C')
					a.nviol++;
			}
			if (pmfd >= 0)
				close(pmfd);
			if (kpffd >= 0)
				close(kpffd);
			if (write(ackfd[1], &a, sizeof a) != sizeof a)
				_exit(3);
			continue;
		}
		const step_t *st = &S->steps[k - 1];
		struct ack a = { k, 0, getpid(), 0, 0 };
		int v = st->vma;
		switch (st->op) {
		case OP_MMAP: {
			size_t len = (size_t)st->npages_map * PG, al = (size_t)S->align_pages * PG;
			int prot = PROT_READ | PROT_WRITE | (st->mte ? PROT_MTE_ : 0);
			/* a PROT_NONE guard page on each side: two scenario VMAs the kernel places
			 * side by side would otherwise merge (same flags, compatible anon_vma), where
			 * the model keeps them apart (a fork then copies the other's zero-page PTEs) */
			uint8_t *raw = mmap(NULL, len + al + 2 * PG, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (raw == MAP_FAILED) {
				violation(k, "kernel-error", v, 0, "mmap: %s", strerror(errno));
				a.nviol++;
				break;
			}
			uint8_t *p = (uint8_t *)(((uintptr_t)raw + PG + al - 1) & ~(al - 1));
			uint8_t *end = raw + len + al + 2 * PG;
			if (p - PG > raw)
				munmap(raw, p - PG - raw);
			if (p + len + PG < end)
				munmap(p + len + PG, end - (p + len + PG));
			mprotect(p - PG, PG, PROT_NONE);
			mprotect(p + len, PG, PROT_NONE);
			/* evictable, unlike the program's own memory (lock_program: MCL_FUTURE) */
			munlock(p, len);
			/* the scenario's folio sizes are enabled for MADV_HUGEPAGE VMAs only
			 * (hugepages-NkB/enabled "madvise", defrag "never": the same orders and the
			 * same GFP_TRANSHUGE_LIGHT as "always" gives a VMA without it), so that the
			 * program's own memory has no large folio: one partly mapped after a fork's
			 * copy-on-write could be neither mlocked nor kept out of a cgroup reclaim */
			madvise(p, len, MADV_HUGEPAGE);
			vbase[v] = p;
			vnp[v] = st->npages_map;
			vmte[v] = calloc(vnp[v], 1);
			vtag[v] = calloc(vnp[v], 1);
			vval[v] = calloc(vnp[v], sizeof(uint64_t));
			vgone[v] = calloc(vnp[v], 1);
			if (st->mte)
				memset(vmte[v], 1, vnp[v]);
			break;
		}
		case OP_MUNMAP:
			runs(st, do_munmap, 0);
			for (int i = 0; i < st->n; i++)
				vgone[v][st->pg[i]] = 1;
			break;
		case OP_MPROTECT:
			if (runs(st, do_mprotect, 0)) {
				violation(k, "kernel-error", v, st->pg[0], "mprotect: %s", strerror(errno));
				a.nviol++;
			}
			for (int i = 0; i < st->n; i++)
				vmte[v][st->pg[i]] = 1;
			break;
		case OP_WRITE:
		case OP_STG:
		case OP_READ:
			for (int i = 0; i < st->n; i++)
				a.nviol += touch_page(k, v, st->pg[i], st->op == OP_READ ? 0 : st->op == OP_WRITE ? 1 : 2, st->tagmode, st->tag);
			break;
		case OP_FORK: {
			pid_t c = fork();
			if (c == 0) {
				me = st->child;
				lock_program(1);
				continue;
			}
			a.childpid = c;
			break;
		}
		case OP_EXIT:
			a.base = 0;
			if (write(ackfd[1], &a, sizeof a) != sizeof a)
				_exit(3);
			_exit(0);
		case OP_PAGEOUT:
			runs(st, do_madvise, MADV_PAGEOUT_);
			break;
		case OP_DONTNEED:
			runs(st, do_madvise, MADV_DONTNEED);
			for (int i = 0; i < st->n; i++) {
				vtag[v][st->pg[i]] = 0;
				vval[v][st->pg[i]] = 0;
			}
			break;
		default:
			break;
		}
		if (v >= 0 && v < MAXV)
			a.base = (uint64_t)(uintptr_t)vbase[v];
		if (write(ackfd[1], &a, sizeof a) != sizeof a)
			_exit(3);
	}
}

/* ------------------------------------------------------------------ controller */

static pid_t ppid_of[MAXP];
static uint64_t pbase[MAXP][MAXV];
static char cgdir[128];
static const char *swapdev;

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, s, strlen(s));
	int e = w < 0 ? -errno : 0;
	close(fd);
	return e;
}
static long read_long(const char *path)
{
	char b[64] = { 0 };
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, b, sizeof b - 1);
	close(fd);
	if (r <= 0)
		return -1;
	return atol(b);
}

#define NCNT 40
static const char *cnt_names[NCNT];
static int ncnt;

static void read_counters(long *vals)
{
	static const char *vm_keys[] = { "pswpin", "pswpout", "swpout_zero", "swpin_zero", "thp_split_page",
		"thp_split_page_failed", "thp_deferred_split_page", "thp_swpout", "thp_swpout_fallback",
		"thp_fault_alloc", "swap_ra", "swap_ra_hit", "pgmajfault", NULL };
	char buf[16384];
	int n = 0;
	int fd = open("/proc/vmstat", O_RDONLY);
	ssize_t r = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
	if (fd >= 0)
		close(fd);
	buf[r > 0 ? r : 0] = 0;
	for (int i = 0; vm_keys[i]; i++) {
		cnt_names[n] = vm_keys[i];
		long val = 0;
		size_t kl = strlen(vm_keys[i]);
		for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
			if (!strncmp(l, vm_keys[i], kl) && l[kl] == ' ') {
				val = atol(l + kl + 1);
				break;
			}
		vals[n++] = val;
	}
	static const char *mthp_keys[] = { "anon_fault_alloc", "anon_fault_fallback", "swpout", "swpout_fallback",
		"swpin", "swpin_fallback", "split", "split_failed", "split_deferred", "nr_anon", NULL };
	static const char *mthp_names[] = { "64kB/anon_fault_alloc", "64kB/anon_fault_fallback", "64kB/swpout",
		"64kB/swpout_fallback", "64kB/swpin", "64kB/swpin_fallback", "64kB/split", "64kB/split_failed",
		"64kB/split_deferred", "64kB/nr_anon", NULL };
	for (int i = 0; mthp_keys[i]; i++) {
		char p[160];
		snprintf(p, sizeof p, "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/stats/%s", mthp_keys[i]);
		cnt_names[n] = mthp_names[i];
		long x = read_long(p);
		vals[n++] = x < 0 ? 0 : x;
	}
	/* SwapCached and SwapFree from meminfo, in kB */
	fd = open("/proc/meminfo", O_RDONLY);
	r = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
	if (fd >= 0)
		close(fd);
	buf[r > 0 ? r : 0] = 0;
	char *c = strstr(buf, "SwapCached:");
	cnt_names[n] = "SwapCached_kB";
	vals[n++] = c ? atol(c + 11) : 0;
	ncnt = n;
}

static int kpf_fd = -1;

/* per page: 'P' present, 'L' present in a large folio, 'Z' zero page, 'S' swapped, '-' none;
 * *off is the swap offset of a swapped page; the PFN of a present page goes to last_pfn */
static uint64_t last_pfn;
static char page_state(pid_t pid, uint64_t addr, uint64_t *off)
{
	last_pfn = 0;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return '?';
	uint64_t e = 0;
	ssize_t r = pread(fd, &e, 8, (off_t)(addr / PG) * 8);
	close(fd);
	if (r != 8)
		return '?';
	*off = 0;
	if (e & (1ULL << 63)) {
		uint64_t pfn = e & ((1ULL << 55) - 1);
		uint64_t f = 0;
		last_pfn = pfn;
		if (kpf_fd < 0)
			kpf_fd = open("/proc/kpageflags", O_RDONLY);
		if (kpf_fd >= 0 && pfn && pread(kpf_fd, &f, 8, (off_t)pfn * 8) == 8) {
			if (f & (1ULL << 24))
				return 'Z';
			if (f & (1ULL << 22))
				return 'L';
		}
		if (!pfn)
			return 'P';
		return 'P';
	}
	if (e & (1ULL << 62)) {
		*off = (e >> 5) & ((1ULL << 50) - 1);
		return 'S';
	}
	return '-';
}

static int wait_gone(pid_t pid)
{
	for (int i = 0; i < 20000; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return 0;
		char path[64], b[256];
		snprintf(path, sizeof path, "/proc/%d/stat", pid);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			return 0;
		ssize_t r = read(fd, b, sizeof b - 1);
		close(fd);
		if (r <= 0)
			return 0;
		b[r] = 0;
		char *q = strrchr(b, ')');
		if (q && (q[2] == 'Z' || q[2] == 'X'))
			return 0;
		usleep(500);
	}
	return -1;
}

static int cg_reclaim(void)
{
	char p[200], amt[32];
	snprintf(p, sizeof p, "%s/memory.current", cgdir);
	long cur = read_long(p);
	if (cur <= 0)
		cur = 1 << 20;
	snprintf(amt, sizeof amt, "%ld", cur + (1L << 20));
	snprintf(p, sizeof p, "%s/memory.reclaim", cgdir);
	return write_file(p, amt);
}

static void evidence_pages(int k, const step_t *st, const char *when)
{
	if (st->proc < 0 || st->vma < 0 || st->n == 0 || !ppid_of[st->proc] || !pbase[st->proc][st->vma])
		return;
	char line[8192], fl[8192];
	int o = snprintf(line, sizeof line, "%s %d %s", OUT_PREFIX_PM, k, when);
	int of = snprintf(fl, sizeof fl, "%s %d %s", OUT_PREFIX_PFN, k, when);
	for (int i = 0; i < st->n && o < (int)sizeof line - 40 && of < (int)sizeof fl - 40; i++) {
		uint64_t off = 0;
		char s = page_state(ppid_of[st->proc], pbase[st->proc][st->vma] + (uint64_t)st->pg[i] * PG, &off);
		if (s == 'S')
			o += snprintf(line + o, sizeof line - o, " %d:S%llu", st->pg[i], (unsigned long long)off);
		else
			o += snprintf(line + o, sizeof line - o, " %d:%c", st->pg[i], s);
		/* the frame a present page is mapped to (0: not present, or PFNs hidden) */
		of += snprintf(fl + of, sizeof fl - of, " %d:%llx", st->pg[i], (unsigned long long)last_pfn);
	}
	out("%s\n", line);
	out("%s\n", fl);
}

static int count_state(const step_t *st, char want)
{
	int c = 0;
	if (st->proc < 0 || st->vma < 0 || !ppid_of[st->proc] || !pbase[st->proc][st->vma])
		return 0;
	for (int i = 0; i < st->n; i++) {
		uint64_t off;
		if (page_state(ppid_of[st->proc], pbase[st->proc][st->vma] + (uint64_t)st->pg[i] * PG, &off) == want)
			c++;
	}
	return c;
}

/* Around a cgroup reclaim: every live scenario process holds (mlocks) its scenario pages but
 * the targets' (on, HOLD_CMD with the target extents), or releases them (RELEASE_CMD).
 * Returns the pages held (hold_refs: the large folios referenced), -1 when a worker did not
 * answer. */
static int hold_refs;

/* VMAs of process pid (lines of /proc/PID/maps): a diagnostic that munlock merged back every
 * VMA the hold split */
static int count_vmas(pid_t pid)
{
	char path[64], buf[4096];
	int n = 0;
	ssize_t r;
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	while ((r = read(fd, buf, sizeof buf)) > 0)
		for (ssize_t i = 0; i < r; i++)
			n += buf[i] == '\n';
	close(fd);
	return n;
}

static int hold_all(int k, int on)
{
	static int vmas_before[MAXP];
	int total = 0;
	hold_refs = 0;
	for (int i = 0; i < S->nprocs; i++) {
		if (!ppid_of[i])
			continue;
		if (on)
			vmas_before[i] = count_vmas(ppid_of[i]);
		int cmd = (on ? HOLD_CMD : RELEASE_CMD) - k;
		struct ack a;
		if (write_full(cmdfd[i][1], &cmd, sizeof cmd))
			return -1;
		if (on && (write_full(cmdfd[i][1], &ntg, sizeof ntg) ||
			   write_full(cmdfd[i][1], tg_lo, ntg * sizeof tg_lo[0]) ||
			   write_full(cmdfd[i][1], tg_hi, ntg * sizeof tg_hi[0])))
			return -1;
		if (read_full(ackfd[0], &a, sizeof a))
			return -1;
		total += a.nviol;
		hold_refs += a.childpid;
		if (!on && count_vmas(ppid_of[i]) != vmas_before[i])
			out("%s %d VMAs of %s not merged back after the hold: %d, were %d\n", OUT_PREFIX_NOTE, k,
			    S->procnames[i], count_vmas(ppid_of[i]), vmas_before[i]);
	}
	return total;
}

/* memory.reclaim of the test's cgroup, with only the step's target folios reclaimable: every
 * live process holds the rest of its scenario pages (hold_all; evict: ntg 0, all of them, so
 * only folios no one maps, those of the swap cache, are left). The targets go one at a time, in
 * the range's address order, as MADV_PAGEOUT and the model take them: one memory.reclaim of
 * several would take them in LRU order (a folio split by a fork's copy-on-write or a `split`
 * puts its pages on the LRU in another order), which decides their swap slots. Two passes
 * (twice) free a written folio from the swap cache, as `keep_cached: false` asks on a disk.
 * With the targets unknown (ntg -1) nothing is held. Returns -1 when a worker did not answer. */
static int reclaim_through_cgroup(int k, int twice)
{
	static uint64_t all_lo[MAXT], all_hi[MAXT];
	int n = ntg, held = 0, refs = 0;
	if (n < 0) {
		cg_reclaim();
		if (twice)
			cg_reclaim();
		return 0;
	}
	memcpy(all_lo, tg_lo, n * sizeof tg_lo[0]);
	memcpy(all_hi, tg_hi, n * sizeof tg_hi[0]);
	for (int i = 0; i < (n ? n : 1); i++) {
		ntg = n ? 1 : 0;
		if (n) {
			tg_lo[0] = all_lo[i];
			tg_hi[0] = all_hi[i];
		}
		int h = hold_all(k, 1);
		if (h < 0)
			return -1;
		held = h > held ? h : held;
		refs = hold_refs > refs ? hold_refs : refs;
		cg_reclaim();
		if (twice)
			cg_reclaim();
		if (hold_all(k, 0) < 0)
			return -1;
	}
	ntg = -1;
	out("%s %d held out of the cgroup reclaim: up to %d page(s) of other folios mlocked, %d large folio(s) referenced; %d target folio(s), one at a time\n",
	    OUT_PREFIX_NOTE, k, held, refs, n);
	return 0;
}

static int run_scenario(const scen_t *sc, int idx)
{
	S = sc;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	if (!mte_available()) {
		out("%s MTE not available (HWCAP2_MTE)\n", OUT_PREFIX_SKIP);
		return 4;
	}
	if (mte_enable()) {
		out("%s PR_SET_TAGGED_ADDR_CTRL failed: %s\n", OUT_PREFIX_SKIP, strerror(errno));
		return 4;
	}
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	/* no swap readahead, as in the model (swapin_readahead reads one page): page-cluster 0
	 * makes both readahead paths of mm/swap_state.c read only the faulting entry
	 * (swap_cluster_readahead: swapin_nr_pages() is 1; swap_vma_readahead: swap_vma_ra_win()
	 * is 1); restored at the end for the export run on someone's machine */
	char old_cluster[16] = "";
	{
		int fd = open("/proc/sys/vm/page-cluster", O_RDONLY);
		if (fd >= 0) {
			ssize_t r = read(fd, old_cluster, sizeof old_cluster - 1);
			old_cluster[r > 0 ? r : 0] = 0;
			close(fd);
		}
		int e = write_file("/proc/sys/vm/page-cluster", "0");
		if (e)
			out("%s 0 page-cluster 0: %s (swap readahead stays on)\n", OUT_PREFIX_NOTE, strerror(-e));
	}
	/* one CPU for the controller and (inherited across fork) every worker: page frees and
	 * allocations then go through the same per-CPU page lists, so a mapping made after a
	 * munmap gets the freed frames back as reliably as the page allocator allows (the
	 * host still checks that from the PFNs of the evidence) */
	{
		cpu_set_t cpus;
		CPU_ZERO(&cpus);
		CPU_SET(0, &cpus);
		if (sched_setaffinity(0, sizeof cpus, &cpus))
			out("%s 0 sched_setaffinity(CPU 0): %s\n", OUT_PREFIX_NOTE, strerror(errno));
	}
	/* own cgroup, so memory.reclaim reclaims the test's own processes */
	snprintf(cgdir, sizeof cgdir, "/sys/fs/cgroup/mteswap-%d-%d", idx, getpid());
	int have_cg = mkdir(cgdir, 0755) == 0;
	if (have_cg) {
		char p[200], b[32];
		snprintf(p, sizeof p, "%s/cgroup.procs", cgdir);
		snprintf(b, sizeof b, "%d", getpid());
		if (write_file(p, b))
			have_cg = 0;
	}
	for (int i = 0; i < sc->nprocs; i++)
		if (pipe(cmdfd[i]))
			return 5;
	if (pipe(ackfd))
		return 5;
	memset(ppid_of, 0, sizeof ppid_of);
	memset(pbase, 0, sizeof pbase);
	/* the program's own memory stays out of every reclaim (lock_program), the controller's
	 * and (fork passes no lock on) the first worker's */
	{
		int e = lock_program(0);
		if (e)
			out("%s 0 mlockall: %s (cgroup reclaim may take the program's own pages)\n", OUT_PREFIX_NOTE, strerror(e));
	}
	pid_t a0 = fork();
	if (a0 == 0) {
		signal(SIGCHLD, SIG_IGN);
		me = 0;
		lock_program(0);
		worker();
		_exit(0);
	}
	ppid_of[0] = a0;
	long before[NCNT], after[NCNT];
	int total_viol = 0, precond_failed = 0, swap_on = 1;
	TAP_PLAN(sc->nsteps);
	for (int k = 1; k <= sc->nsteps; k++) {
		const step_t *st = &sc->steps[k - 1];
		int nviol = 0;
		char note[300] = "";
		read_counters(before);
		if (st->op == OP_SPLIT || st->op == OP_RECLAIM || st->op == OP_MUNMAP || st->op == OP_DONTNEED)
			evidence_pages(k, st, "before");
		int op = st->op, fallback = 0;
		if (op == OP_RECLAIM && !swap_on) {
			/* no swap space: reclaim scans no anonymous memory (can_reclaim_anon_pages), so
			 * it has nothing of the range to do, as in the model; memory.reclaim would still
			 * run the shrinkers (the deferred split among them), which the model keeps for
			 * drop_caches */
			op = -1;
			out("%s %d reclaim after swapoff: nothing to reclaim\n", OUT_PREFIX_NOTE, k);
		} else if (op == OP_RECLAIM) {
			/* reclaim of just the range's folios, whole (reclaim_own); what is written stays
			 * in the swap cache on a disk (asynchronous writeback: one reclaim pass, compared
			 * as keep_cached on the host) and is freed at once on zram. The cgroup's
			 * memory.reclaim, which takes all the test's memory, only when that cannot be. */
			int cmd = RECLAIM_CMD - k;
			struct ack a;
			if (write(cmdfd[st->proc][1], &cmd, sizeof cmd) != sizeof cmd || read_full(ackfd[0], &a, sizeof a) ||
			    read_full(ackfd[0], &ntg, sizeof ntg) || ntg > MAXT ||
			    (ntg > 0 && (read_full(ackfd[0], tg_lo, ntg * sizeof tg_lo[0]) ||
					 read_full(ackfd[0], tg_hi, ntg * sizeof tg_hi[0]))))
				return 6;
			if (!a.nviol) {
				op = -1;
				out("%s %d reclaim by MADV_PAGEOUT of whole folios\n", OUT_PREFIX_NOTE, k);
			} else {
				fallback = 1;
				out("%s %d reclaim through the cgroup (a folio of the range is shared or crosses a VMA boundary)\n",
				    OUT_PREFIX_NOTE, k);
			}
		}
		switch (op) {
		case -1:
			break;
		case OP_RECLAIM:
		case OP_EVICT:
			if (!have_cg) {
				snprintf(note, sizeof note, "precondition not met [no-cgroup]: no memory cgroup: %s", strerror(errno));
				precond_failed = 1;
				break;
			}
			if (st->op == OP_EVICT)
				ntg = 0;
			if (reclaim_through_cgroup(k, st->op == OP_RECLAIM && !st->keep))
				return 6;
			break;
		case OP_SPLIT: {
			char b[160];
			uint64_t lo = pbase[st->proc][st->vma] + (uint64_t)st->pg[0] * PG;
			uint64_t hi = pbase[st->proc][st->vma] + ((uint64_t)st->pg[st->n - 1] + 1) * PG;
			snprintf(b, sizeof b, "%d,0x%llx,0x%llx", ppid_of[st->proc], (unsigned long long)lo, (unsigned long long)hi);
			int e = write_file("/sys/kernel/debug/split_huge_pages", b);
			if (e)
				snprintf(note, sizeof note, "split_huge_pages: %s", strerror(-e));
			break;
		}
		case OP_SWAPOFF:
			if (swapdev && swapoff(swapdev))
				snprintf(note, sizeof note, "swapoff %s: %s", swapdev, strerror(errno));
			swap_on = 0;
			break;
		case OP_DROP_CACHES: {
			/* drop_slab runs every shrinker, the deferred split queue's included */
			int e = write_file("/proc/sys/vm/drop_caches", "3");
			if (e)
				snprintf(note, sizeof note, "drop_caches: %s", strerror(-e));
			break;
		}
		default: {
			pid_t target = ppid_of[st->proc];
			if (write(cmdfd[st->proc][1], &k, sizeof k) != sizeof k)
				return 6;
			struct ack a;
			if (read(ackfd[0], &a, sizeof a) != sizeof a) {
				out("%s worker for step %d died\n", OUT_PREFIX_FATAL, k);
				return 6;
			}
			nviol = a.nviol;
			if (st->vma >= 0)
				pbase[st->proc][st->vma] = a.base;
			if (st->op == OP_FORK) {
				ppid_of[st->child] = a.childpid;
				memcpy(pbase[st->child], pbase[st->proc], sizeof pbase[0]);
			}
			if (st->op == OP_EXIT) {
				wait_gone(target);
				ppid_of[st->proc] = 0;
			}
		}
		}
		read_counters(after);
		{
			char line[2048];
			int o = snprintf(line, sizeof line, "%s %d", OUT_PREFIX_CNT, k);
			for (int i = 0; i < ncnt; i++)
				if (after[i] != before[i])
					o += snprintf(line + o, sizeof line - o, " %s=%+ld", cnt_names[i], after[i] - before[i]);
			out("%s\n", line);
		}
		if (st->op != OP_MMAP && st->op != OP_FORK && st->op != OP_EXIT && st->op != OP_MUNMAP)
			evidence_pages(k, st, "after");
		/* the state of the step's VMA in its process, compared page by page with the
		 * model's on the host (a split of small folios is compared there too: a no-op in
		 * both) */
		if (st->proc >= 0 && st->vma >= 0 && ppid_of[st->proc] && st->op != OP_EXIT) {
			int probe = STATE_PROBE - k;
			struct ack a;
			if (write(cmdfd[st->proc][1], &probe, sizeof probe) != sizeof probe || read(ackfd[0], &a, sizeof a) != sizeof a)
				return 6;
		}
		/* preconditions user space cannot force; "[class]" names them for the host's count.
		 * Pages left resident by reclaim are judged on the host, against the model's
		 * states (after swapoff the model keeps them too). */
		if (st->op == OP_RECLAIM) {
			int left = count_state(st, 'P') + count_state(st, 'L');
			if (left)
				out("%s %d resident after reclaim: %d\n", OUT_PREFIX_NOTE, k, left);
			/* only the cgroup fallback can fail keep_cached: one MADV_PAGEOUT pass is what
			 * keep_cached asks for, and what it frees (a zero-filled folio, a clean one
			 * already in swap) is compared with the model */
			if (st->keep && !left && fallback) {
				int probe = -k, swapped = count_state(st, 'S');
				struct ack a;
				if (write(cmdfd[st->proc][1], &probe, sizeof probe) != sizeof probe || read(ackfd[0], &a, sizeof a) != sizeof a)
					return 6;
				out("%s %d swap-cache %d/%d\n", OUT_PREFIX_NOTE, k, a.nviol, swapped);
				if (a.nviol < swapped) {
					snprintf(note, sizeof note, "precondition not met [keep-cached]: reclaim keep_cached but only %d of %d swapped pages are in the swap cache (mincore)", a.nviol, swapped);
					precond_failed = 1;
				}
			}
		}
		if (note[0])
			out("%s %d %s\n", OUT_PREFIX_NOTE, k, note);
		total_viol += nviol;
		TAP_STEP(k, st->desc, nviol, note);
	}
	for (int i = 0; i < sc->nprocs; i++)
		if (ppid_of[i])
			kill(ppid_of[i], SIGKILL);
	while (waitpid(-1, NULL, 0) > 0)
		;
	munlockall();
	if (have_cg)
		rmdir(cgdir);
	if (old_cluster[0])
		write_file("/proc/sys/vm/page-cluster", old_cluster);
	return precond_failed ? 3 : total_viol ? 1 : 0;
}

//! Tiny static ELF64 executables written byte by byte, one per conda
//! platform: no cross compiler is needed to give the test channel a real
//! aarch64 or ppc64le program. Each prints a text with the `write` system
//! call and exits 0; the x86_64 one runs here, the others are checked by
//! `readelf` and `file` once they come out of an image.
//!
//! Layout: the ELF header (64 bytes), one `PT_LOAD` program header (56
//! bytes) mapping the whole file read + execute at [`BASE`], the code,
//! then the text. No section headers: the kernel needs none.

/// Where the file is mapped: 64 KiB aligned (ppc64 and some aarch64
/// kernels use 64 KiB pages) and below 4 GiB, so 32-bit immediates reach.
const BASE: u64 = 0x1000_0000;
/// The code's offset in the file: right after the two headers.
const CODE: u64 = 64 + 56;

/// A static ELF64 little-endian executable for the conda `subdir`
/// (`linux-64`, `linux-aarch64`, `linux-ppc64le`) that writes `text` to
/// stdout and exits 0. `None` for any other subdir.
pub fn hello(subdir: &str, text: &str) -> Option<Vec<u8>> {
    let len = u16::try_from(text.len()).expect("a short text");
    // Each arch's code has a fixed length, so the text's address is known
    // before the code is written.
    let (machine, flags, code_len) = match subdir {
        "linux-64" => (62u16, 0u32, 32u64),
        "linux-aarch64" => (183, 0, 32),
        // EM_PPC64; e_flags 2: the ELFv2 ABI (entry is the code itself).
        "linux-ppc64le" => (21, 2, 36),
        _ => return None,
    };
    let text_at = CODE + code_len;
    let code = match subdir {
        "linux-64" => x86_64(BASE + text_at, len),
        "linux-aarch64" => aarch64(text_at - CODE, len),
        _ => ppc64le(BASE + text_at, len),
    };
    assert_eq!(code.len() as u64, code_len, "{subdir}'s code length");
    let size = text_at + text.len() as u64;
    let mut elf = header(machine, flags);
    program_header(&mut elf, size);
    elf.extend(code);
    elf.extend(text.as_bytes());
    Some(elf)
}

/// The ELF header of an `ET_EXEC` for `machine`, entry at the code.
fn header(machine: u16, flags: u32) -> Vec<u8> {
    let mut h = b"\x7fELF".to_vec();
    // ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_SYSV, then padding.
    h.extend([2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    h.extend(2u16.to_le_bytes()); // e_type: ET_EXEC
    h.extend(machine.to_le_bytes());
    h.extend(1u32.to_le_bytes()); // e_version
    h.extend((BASE + CODE).to_le_bytes()); // e_entry
    h.extend(64u64.to_le_bytes()); // e_phoff
    h.extend(0u64.to_le_bytes()); // e_shoff: no section headers
    h.extend(flags.to_le_bytes());
    h.extend(64u16.to_le_bytes()); // e_ehsize
    h.extend(56u16.to_le_bytes()); // e_phentsize
    h.extend(1u16.to_le_bytes()); // e_phnum
    h.extend(64u16.to_le_bytes()); // e_shentsize
    h.extend(0u16.to_le_bytes()); // e_shnum
    h.extend(0u16.to_le_bytes()); // e_shstrndx
    h
}

/// One `PT_LOAD` of the whole file (`size` bytes), read + execute.
fn program_header(elf: &mut Vec<u8>, size: u64) {
    elf.extend(1u32.to_le_bytes()); // p_type: PT_LOAD
    elf.extend(5u32.to_le_bytes()); // p_flags: PF_R | PF_X
    elf.extend(0u64.to_le_bytes()); // p_offset
    elf.extend(BASE.to_le_bytes()); // p_vaddr
    elf.extend(BASE.to_le_bytes()); // p_paddr
    elf.extend(size.to_le_bytes()); // p_filesz
    elf.extend(size.to_le_bytes()); // p_memsz
    elf.extend(0x10000u64.to_le_bytes()); // p_align
}

/// x86_64: `write(1, text, len)` then `exit(0)` by `syscall` (32 bytes).
fn x86_64(text: u64, len: u16) -> Vec<u8> {
    let text = u32::try_from(text).expect("below 4 GiB");
    let mut c = Vec::new();
    c.extend([0xb8, 1, 0, 0, 0]); // mov eax, 1 (write)
    c.extend([0xbf, 1, 0, 0, 0]); // mov edi, 1 (stdout)
    c.push(0xbe); // mov esi, text
    c.extend(text.to_le_bytes());
    c.push(0xba); // mov edx, len
    c.extend(u32::from(len).to_le_bytes());
    c.extend([0x0f, 0x05]); // syscall
    c.extend([0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
    c.extend([0x31, 0xff]); // xor edi, edi
    c.extend([0x0f, 0x05]); // syscall
    c.push(0x90); // nop: the text 4-byte aligned
    c
}

/// aarch64: `write` (x8 = 64) then `exit` (x8 = 93) by `svc #0`; the text
/// is `text_from_code` bytes after the code's start (32 bytes).
fn aarch64(text_from_code: u64, len: u16) -> Vec<u8> {
    let movz = |rd: u32, imm: u16| 0xd280_0000 | (u32::from(imm) << 5) | rd;
    // adr x1, text: the offset from this instruction (the second).
    let offset = u32::try_from(text_from_code - 4).expect("a near text");
    let adr = 0x1000_0000 | ((offset & 3) << 29) | ((offset >> 2) << 5) | 1;
    let words = [
        movz(0, 1),   // mov x0, #1 (stdout)
        adr,          // adr x1, text
        movz(2, len), // mov x2, #len
        movz(8, 64),  // mov x8, #64 (write)
        0xd400_0001,  // svc #0
        movz(0, 0),   // mov x0, #0
        movz(8, 93),  // mov x8, #93 (exit)
        0xd400_0001,  // svc #0
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// ppc64le: `write` (r0 = 4) then `exit` (r0 = 1) by `sc` (36 bytes).
fn ppc64le(text: u64, len: u16) -> Vec<u8> {
    let text = u32::try_from(text).expect("below 4 GiB");
    let li = |rt: u32, imm: u16| 0x3800_0000 | (rt << 21) | u32::from(imm);
    let words = [
        li(0, 4),                      // li r0, 4 (write)
        li(3, 1),                      // li r3, 1 (stdout)
        0x3c80_0000 | (text >> 16),    // lis r4, text@h
        0x6084_0000 | (text & 0xffff), // ori r4, r4, text@l
        li(5, len),                    // li r5, len
        0x4400_0002,                   // sc
        li(0, 1),                      // li r0, 1 (exit)
        li(3, 0),                      // li r3, 0
        0x4400_0002,                   // sc
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
